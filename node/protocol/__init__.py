"""The wire: who a node is, and how what it says is signed, serialized and checked.

identity.py (Ed25519 node key, node id), tls.py (self-signed certificates, fingerprints,
pinning), envelope.py (signatures over exact payload bytes), request_auth.py (signed live
requests, replay guard), serde.py (schema <-> gridpoint.v1 messages: wire types stop here),
rpc_errors.py (GridpointError <-> gRPC status, both directions), methods.py (every method's
full name, read from the service descriptors), peer_text.py (text a peer chose, made safe to
print), revocation.py (the revocation certificate `init` writes: a key revocation signed
ahead of need), repeated.py (a message of one repeated field written from parts already
encoded: a live answer's envelopes as stored).

Must never decide trust policy (who is trusted is the caller's predicate), touch the store,
or re-serialize a payload it verifies.
"""
