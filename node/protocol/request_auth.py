"""Signatures on live gRPC requests, and the replay guard that checks them.

A caller signs the exact request bytes it sends together with the method name, a time and
a nonce (RequestAuth, carried as binary metadata). The server checks the signature, that
the caller is trusted, that the time is fresh and that the nonce was not seen before within
the freshness window. Nonces live in memory: after a restart the time window alone bounds
replays to at most request_window_s old.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable

from gridpoint.errors import BadSignature, Replayed, UnknownSigner
from gridpoint.node.protocol.envelope import NONCE_LEN, check_clock, now_ms, signing_message
from gridpoint.node.protocol.identity import NodeIdentity, node_id_of, verify_signature
from gridpoint.v1 import envelope_pb2

__all__ = ["AUTH_METADATA_KEY", "ReplayGuard", "sign_request", "verify_request"]

AUTH_METADATA_KEY = "gp-request-auth-bin"
_REQUEST_TAG = b"gridpoint.v1/request"


def _request_message(method: str, signed_at_ms: int, nonce: bytes, body: bytes) -> bytes:
    return signing_message(
        _REQUEST_TAG, method.encode(), struct.pack(">q", signed_at_ms), nonce, body
    )


def sign_request(identity: NodeIdentity, method: str, body: bytes) -> bytes:
    """The serialized RequestAuth for sending body to method."""
    at = now_ms()
    nonce = os.urandom(NONCE_LEN)
    auth = envelope_pb2.RequestAuth(
        signer_id=identity.node_id,
        signer_public_key=identity.public_key,
        method=method,
        signed_at_unix_ms=at,
        nonce=nonce,
        signature=identity.sign(_request_message(method, at, nonce, body)),
    )
    return auth.SerializeToString()


class ReplayGuard:
    """Remembers nonces for the freshness window; thread-safe."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def check_and_remember(self, signer_id: str, nonce: bytes, signed_at_ms: int) -> None:
        key = signer_id.encode() + nonce
        horizon = now_ms() - int(self.window_s * 1000) * 2
        with self._lock:
            if key in self._seen:
                raise Replayed("this request was already received (nonce seen)")
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            self._seen[key] = signed_at_ms


def verify_request(
    auth_bytes: bytes,
    method: str,
    body: bytes,
    *,
    is_trusted: Callable[[str], bool],
    guard: ReplayGuard,
) -> str:
    """Checks a request's RequestAuth; returns the caller's node id or raises EnvelopeError."""
    try:
        auth = envelope_pb2.RequestAuth.FromString(auth_bytes)
    except Exception as exc:  # protobuf raises DecodeError, but also others on garbage
        raise BadSignature("request authentication is malformed") from exc
    if auth.method != method:
        raise BadSignature("request was signed for another method")
    if len(auth.nonce) != NONCE_LEN:
        raise BadSignature(f"request nonce must be {NONCE_LEN} bytes")
    if node_id_of(auth.signer_public_key) != auth.signer_id:
        raise BadSignature("the caller's public key does not match its node id")
    verify_signature(
        auth.signer_public_key,
        auth.signature,
        _request_message(method, auth.signed_at_unix_ms, auth.nonce, body),
    )
    if not is_trusted(auth.signer_id):
        raise UnknownSigner(f"caller {auth.signer_id} is not a trusted peer of this node")
    check_clock(auth.signed_at_unix_ms, guard.window_s, None)
    guard.check_and_remember(auth.signer_id, auth.nonce, auth.signed_at_unix_ms)
    return auth.signer_id
