"""A key revocation signed ahead of need: the revocation certificate `init` writes to keep offline.

The certificate is the armored bytes of a signed KeyRevocation envelope (statements.proto),
exactly what `gridpoint identity revoke --certificate FILE` publishes; its verification rule
lives with the other statements (node/control/statements.py). Here only because the home
writes one at `init`, and the home sits below the owner's-control package.

Must never decode more than MAX_STATEMENT_BYTES of a certificate's statement.
"""

from __future__ import annotations

import base64
import binascii
import re

from google.protobuf.message import DecodeError

from gridpoint.errors import ConfigError, OversizedRecord
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.v1 import envelope_pb2, statements_pb2

__all__ = [
    "MAX_STATEMENT_BYTES",
    "REVOCATION_TYPE",
    "read_revocation_certificate",
    "revocation_certificate",
    "revocation_envelope",
]

#: Largest signed statement payload accepted (a full tombstone is about 67 KiB).
MAX_STATEMENT_BYTES = 128 * 1024
REVOCATION_TYPE = statements_pb2.KeyRevocation.DESCRIPTOR.full_name
_ARMOR = "GRIDPOINT KEY REVOCATION"


def revocation_envelope(
    signer: NodeIdentity, public_key: bytes, reason: str
) -> envelope_pb2.SignedEnvelope:
    """A revocation of public_key's key, signed by signer (that key, or a later one); the
    reason is one line of printable text, checked by the caller."""
    payload = statements_pb2.KeyRevocation(
        schema_version=1, public_key=public_key, reason=reason
    ).SerializeToString(deterministic=True)
    return sign_envelope(signer, payload, REVOCATION_TYPE)


def revocation_certificate(identity: NodeIdentity) -> bytes:
    """A pre-signed revocation of identity's key, as text to keep offline."""
    envelope = revocation_envelope(identity, identity.public_key, "revocation certificate")
    body = base64.encodebytes(envelope.SerializeToString(deterministic=True)).decode()
    return (
        f"# Revocation certificate of gridpoint node {identity.node_id}.\n"
        "# Keep it offline: anyone holding it can revoke this key, with\n"
        "#   gridpoint identity revoke --certificate FILE\n"
        f"-----BEGIN {_ARMOR}-----\n{body}-----END {_ARMOR}-----\n"
    ).encode()


def read_revocation_certificate(text: bytes) -> envelope_pb2.SignedEnvelope:
    """The signed revocation a certificate holds; ConfigError if it holds none."""
    match = re.search(
        rf"-----BEGIN {_ARMOR}-----\s*([A-Za-z0-9+/=\s]+?)-----END {_ARMOR}-----".encode(), text
    )
    if match is None:
        raise ConfigError("this file is not a gridpoint revocation certificate")
    try:
        envelope = envelope_pb2.SignedEnvelope.FromString(
            base64.b64decode(b"".join(match.group(1).split()), validate=True)
        )
    except (binascii.Error, DecodeError):
        raise ConfigError(
            "the revocation certificate is damaged (its signed part does not decode)"
        ) from None
    if envelope.payload_type != REVOCATION_TYPE:
        raise ConfigError("the certificate does not hold a key revocation")
    if len(envelope.payload) > MAX_STATEMENT_BYTES:
        raise OversizedRecord("the certificate's statement is larger than this node accepts")
    return envelope
