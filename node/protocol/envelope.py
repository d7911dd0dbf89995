"""Signed envelopes: sign exact payload bytes, verify them, and name them by content.

A signature covers a domain-separated message (protocol tag, payload type, time, nonce,
payload), so it cannot be reused for another type or purpose. Verification never
re-serializes anything: it checks the bytes that arrived. Record ids are SHA-256 of the
author's id and the payload, so a relayed copy can be checked by anyone.

Must never: accept an envelope whose key does not hash to its signer id, trust a signer
because a trusted peer relayed its record, or keep anything of an envelope that the signature
does not cover but its known fields (canonical_envelope()).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from gridpoint.errors import BadSignature, ClockOutOfWindow, UnknownSigner, WrongPayloadType
from gridpoint.node.protocol.identity import NodeIdentity, node_id_of, verify_signature
from gridpoint.v1 import envelope_pb2

__all__ = [
    "NONCE_LEN",
    "canonical_envelope",
    "check_clock",
    "VerifiedEnvelope",
    "content_id",
    "now_ms",
    "sign_envelope",
    "signing_message",
    "verify_envelope",
]

NONCE_LEN = 16
_ENVELOPE_TAG = b"gridpoint.v1/envelope"
#: Accepted clock skew for anything signed "now" by a peer.
MAX_FUTURE_S = 300.0


def now_ms() -> int:
    """Current time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def signing_message(tag: bytes, *parts: bytes) -> bytes:
    """Concatenates tag and parts, each prefixed by its 8-byte big-endian length.

    Length prefixes make the encoding unambiguous: no two different part lists give the
    same bytes.
    """
    out = bytearray()
    for part in (tag, *parts):
        out += struct.pack(">Q", len(part))
        out += part
    return bytes(out)


_RECORD_ID_TAG = b"gridpoint.v1/record-id"


def content_id(signer_id: str, payload: bytes) -> str:
    """The id of a record: SHA-256 over its author's node id and its payload bytes.

    Binding the author keeps two nodes that publish identical content from colliding,
    while the same author publishing the same content again gets the same id.
    """
    return hashlib.sha256(signing_message(_RECORD_ID_TAG, signer_id.encode(), payload)).hexdigest()


def _envelope_message(payload_type: str, signed_at_ms: int, nonce: bytes, payload: bytes) -> bytes:
    return signing_message(
        _ENVELOPE_TAG, payload_type.encode(), struct.pack(">q", signed_at_ms), nonce, payload
    )


def sign_envelope(
    identity: NodeIdentity, payload: bytes, payload_type: str, *, signed_at_ms: int | None = None
) -> envelope_pb2.SignedEnvelope:
    """Signs payload (already serialized, never re-encoded) into an envelope."""
    at = now_ms() if signed_at_ms is None else signed_at_ms
    nonce = os.urandom(NONCE_LEN)
    return envelope_pb2.SignedEnvelope(
        payload=payload,
        payload_type=payload_type,
        signer_id=identity.node_id,
        signer_public_key=identity.public_key,
        signature=identity.sign(_envelope_message(payload_type, at, nonce, payload)),
        signed_at_unix_ms=at,
        nonce=nonce,
    )


def canonical_envelope(envelope: envelope_pb2.SignedEnvelope) -> bytes:
    """The envelope re-encoded from its known fields only, deterministically.

    The outer envelope is not signed as bytes (only its payload is, byte-exact, with its
    type, time and nonce), so a relaying peer could add unknown fields and have them stored
    and served on. Re-encoding drops them: every copy of one signed envelope is stored alike.
    """
    known = envelope_pb2.SignedEnvelope(
        payload=envelope.payload,
        payload_type=envelope.payload_type,
        signer_id=envelope.signer_id,
        signer_public_key=envelope.signer_public_key,
        signature=envelope.signature,
        signed_at_unix_ms=envelope.signed_at_unix_ms,
        nonce=envelope.nonce,
    )
    return known.SerializeToString(deterministic=True)


@dataclass(frozen=True)
class VerifiedEnvelope:
    """An envelope whose signature, signer and type were checked."""

    id: str
    signer_id: str
    payload: bytes
    payload_type: str
    signed_at_ms: int
    envelope: envelope_pb2.SignedEnvelope


def verify_envelope(
    envelope: envelope_pb2.SignedEnvelope,
    *,
    expected_type: str,
    is_trusted: Callable[[str], bool],
    max_age_s: float | None = None,
    clock_ms: int | None = None,
) -> VerifiedEnvelope:
    """Checks an envelope; returns it verified or raises an EnvelopeError subclass.

    max_age_s bounds how old the signature may be (for live messages); records relayed
    long after they were signed pass None. A signing time in the future beyond the
    accepted skew is always refused.
    """
    if envelope.payload_type != expected_type:
        raise WrongPayloadType(
            f"expected a {expected_type} envelope, got {envelope.payload_type or 'no type'}"
        )
    if len(envelope.nonce) != NONCE_LEN:
        raise BadSignature(f"envelope nonce must be {NONCE_LEN} bytes")
    if node_id_of(envelope.signer_public_key) != envelope.signer_id:
        raise BadSignature("the signer's public key does not match its node id")
    verify_signature(
        envelope.signer_public_key,
        envelope.signature,
        _envelope_message(
            envelope.payload_type, envelope.signed_at_unix_ms, envelope.nonce, envelope.payload
        ),
    )
    if not is_trusted(envelope.signer_id):
        raise UnknownSigner(f"signer {envelope.signer_id} is not a trusted peer of this node")
    check_clock(envelope.signed_at_unix_ms, max_age_s, clock_ms)
    return VerifiedEnvelope(
        id=content_id(envelope.signer_id, envelope.payload),
        signer_id=envelope.signer_id,
        payload=envelope.payload,
        payload_type=envelope.payload_type,
        signed_at_ms=envelope.signed_at_unix_ms,
        envelope=envelope,
    )


def check_clock(signed_at_ms: int, max_age_s: float | None, clock_ms: int | None) -> None:
    now = now_ms() if clock_ms is None else clock_ms
    if signed_at_ms > now + MAX_FUTURE_S * 1000:
        raise ClockOutOfWindow("signed in the future, beyond the accepted clock skew")
    if max_age_s is not None and signed_at_ms < now - max_age_s * 1000:
        raise ClockOutOfWindow(f"signed more than {max_age_s:.0f} s ago")
