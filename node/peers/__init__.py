"""Calling trusted peers, through a transport seam.

transport.py (PeerTransport: what a node asks of a peer, unary and streaming, and the
factory that opens one), grpc_transport.py (the real one: mutual TLS, pinned certificate,
signed requests), inprocess.py (no socket: a peer's service called directly, for tests),
diagnose.py (a peer that is down told from one that refuses our certificate), trust.py
(`peer add`: check a fingerprint, greet, pin), sync.py (pull sync), live_query.py
(`catalog query --peers`), artifact_pull.py (`model pull`: a verified, resumable download).

Everything above the transport works on schema and store types; tests run it over an
in-process transport. Must never trust what a peer sends before it is verified.
"""
