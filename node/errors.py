"""The exceptions gridpoint raises, and the one rule they share.

Every message is safe to show a user and to send to a peer: it names what is wrong and
what to do, and never carries a key, the node secret, a private path or exception text
from a private pipeline. The CLI prints one line per error; the gRPC boundary
(node/rpc_errors.py) maps each class to a status code.

    GridpointError
    ├── ConfigError          a config file, study file or command-line value is wrong
    ├── HomeError            the node home is missing, incomplete or already initialized
    ├── RecordError          a run record does not validate (the message names the field)
    ├── RequestError         a request's arguments are invalid (bad cursor, limit, ...)
    │   └── FilterError          a catalog filter does not parse (points at the column)
    ├── StoreError           the database cannot be opened or migrated
    ├── EnvelopeError        a signed envelope or request does not verify
    │   ├── BadSignature         signature, key or content id does not match
    │   ├── UnknownSigner        the signer is not trusted by this node
    │   ├── WrongPayloadType     the payload is not of the type expected here
    │   ├── ClockOutOfWindow     signed too long ago, or in the future
    │   └── Replayed             this nonce was already seen
    └── PeerError            a peer is unreachable, answered wrongly or refused us
        ├── PeerUnavailable      no answer in time (down, unreachable, TLS refused)
        ├── PeerRefused          it answered, refusing our request (not trusted, ...)
        └── FingerprintMismatch  the peer's TLS certificate is not the one given
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "ClockOutOfWindow",
    "ConfigError",
    "EnvelopeError",
    "FilterError",
    "FingerprintMismatch",
    "GridpointError",
    "HomeError",
    "PeerError",
    "PeerRefused",
    "PeerUnavailable",
    "RecordError",
    "Replayed",
    "RequestError",
    "StoreError",
    "UnknownSigner",
    "WrongPayloadType",
]


class GridpointError(Exception):
    """Base of every error gridpoint raises on purpose."""


class ConfigError(GridpointError):
    """A config file, study file or command-line value is wrong."""


class HomeError(GridpointError):
    """The node home is missing, incomplete, or already holds an identity."""


class RecordError(GridpointError):
    """A run record does not validate; the message names the offending field."""


class RequestError(GridpointError):
    """A request's arguments are invalid (a cursor this node never issued, a bad limit...)."""


class FilterError(RequestError):
    """A catalog filter does not parse or names an unknown key."""

    def __init__(self, message: str, column: int | None = None) -> None:
        where = f" (at column {column})" if column is not None else ""
        super().__init__(f"{message}{where}")
        self.column = column


class StoreError(GridpointError):
    """The store cannot be opened, migrated or written."""


class EnvelopeError(GridpointError):
    """A signed envelope or signed request does not verify."""


class BadSignature(EnvelopeError):
    """The signature, the signer's key or the content id does not match the bytes."""


class UnknownSigner(EnvelopeError):
    """The signer is not among this node's trusted peers."""


class WrongPayloadType(EnvelopeError):
    """The envelope carries a payload of another type than the one expected here."""


class ClockOutOfWindow(EnvelopeError):
    """The signing time is outside the accepted window (too old, or in the future)."""


class Replayed(EnvelopeError):
    """The nonce was already used within the freshness window."""


class PeerError(GridpointError):
    """A peer is unreachable, refused us, or answered something unusable."""


class FingerprintMismatch(PeerError):
    """The peer presented a TLS certificate other than the pinned one."""


class PeerUnavailable(PeerError):
    """The peer did not answer in time (down, unreachable, or refused our certificate)."""


class PeerRefused(PeerError):
    """The peer answered and refused the request (we are not trusted, stale clock, ...)."""
