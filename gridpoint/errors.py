"""The exceptions gridpoint raises, under one root, and the one rule they share.

Every message is safe to show a user and to send to a peer: it names what is wrong and
what to do, and never carries a key, the node secret, a private path or exception text
from a private pipeline. The CLI prints one line per error; the gRPC boundary
(gridpoint.node.protocol.rpc_errors) maps each class to a status code. Each class carries
a machine-readable `reason` (a short slug): code that must tell errors apart (the sync
report, the JSON output) reads it, never the class name.

    GridpointError
    ├── ConfigError          a config file, study file or command-line value is wrong
    │   ├── PolicyError          the sharing policy is wrong (the message names its line)
    │   └── PrivacyBudgetExceeded  a private study would spend past its pipeline's budget
    ├── HomeError            the node home is missing, incomplete or already initialized
    ├── RecordError          a run record does not validate (the message names the field)
    ├── RequestError         a request's arguments are invalid (bad cursor, limit, ...)
    │   └── FilterError          a catalog filter does not parse (points at the column)
    ├── StoreError           the database cannot be opened, migrated or written
    │   └── UnstorableRecord     one record the database cannot hold (refused, not the page)
    ├── TrainerError         local training cannot run as asked
    │   ├── StudyConfigError     the study file is invalid (raised before anything trains)
    │   ├── PipelineError        the private pipeline cannot be found or returned unusable data
    │   └── ModelLoadError       the base model cannot be loaded from local files
    ├── EnvelopeError        a signed envelope or request does not verify
    │   ├── BadSignature         signature, key or content id does not match
    │   ├── UnknownSigner        the signer is not trusted by this node
    │   ├── WrongPayloadType     the payload is not of the type expected here
    │   ├── ClockOutOfWindow     signed too long ago, or in the future
    │   ├── Replayed             this nonce was already seen
    │   ├── OversizedRecord      the signed record is larger than this node accepts
    │   ├── BadStatement         a statement breaks its rules (another author's record, ...)
    │   ├── Withdrawn            the record was withdrawn by its author
    │   ├── RevokedKey           signed by a revoked key, or by a key after its rotation
    │   └── OutsideAudience      the record's audience does not include the node
    ├── ArtifactError        a kept model cannot be stored, found, read or fetched as asked
    │   ├── ArtifactNotFound     no artifact has this id (or prefix) here
    │   ├── NotShared            the caller is not among the artifact's readers
    │   ├── RegistryError        a registered name, version or alias is wrong or unknown
    │   │   └── ProtectedAlias       moving or removing a protected alias needs --force
    │   └── SignatureInvalid     an exported model does not match its signature or binding
    └── PeerError            a peer is unreachable, answered wrongly or refused us
        ├── PeerUnavailable      no answer in time (down, unreachable, TLS refused)
        │   └── Busy                 asks us to come back shortly (slots taken, brief outage)
        ├── PeerRefused          it answered, refusing our request (not trusted, ...)
        ├── PeerMisbehaved       it answered something a correct peer never sends
        ├── PeerConflict         `peer add` would replace an already trusted peer
        └── FingerprintMismatch  the peer's TLS certificate is not the one given
"""

from __future__ import annotations

import socket
import ssl
from typing import ClassVar

__all__ = [
    "ArtifactError",
    "ArtifactNotFound",
    "BadSignature",
    "BadStatement",
    "Busy",
    "ClockOutOfWindow",
    "ConfigError",
    "EnvelopeError",
    "FilterError",
    "FingerprintMismatch",
    "GridpointError",
    "HomeError",
    "NotShared",
    "OutsideAudience",
    "ModelLoadError",
    "OversizedRecord",
    "PeerConflict",
    "PeerError",
    "PeerMisbehaved",
    "PeerRefused",
    "PeerUnavailable",
    "PipelineError",
    "PolicyError",
    "PrivacyBudgetExceeded",
    "ProtectedAlias",
    "RecordError",
    "RegistryError",
    "Replayed",
    "RequestError",
    "RevokedKey",
    "SignatureInvalid",
    "StoreError",
    "StudyConfigError",
    "TrainerError",
    "UnknownSigner",
    "UnstorableRecord",
    "Withdrawn",
    "WrongPayloadType",
    "in_words",
]


class GridpointError(Exception):
    """Base of every error gridpoint raises on purpose."""

    reason: ClassVar[str] = "error"


class ConfigError(GridpointError):
    """A config file, study file or command-line value is wrong."""

    reason = "config"


class HomeError(GridpointError):
    """The node home is missing, incomplete, or already holds an identity."""

    reason = "home"


class RecordError(GridpointError):
    """A run record does not validate; the message names the offending field."""

    reason = "invalid-record"


class RequestError(GridpointError):
    """A request's arguments are invalid (a cursor this node never issued, a bad limit...)."""

    reason = "invalid-request"


class FilterError(RequestError):
    """A catalog filter does not parse or names an unknown key."""

    reason = "invalid-filter"

    def __init__(self, message: str, column: int | None = None) -> None:
        where = f" (at column {column})" if column is not None else ""
        super().__init__(f"{message}{where}")
        self.column = column


class PolicyError(ConfigError):
    """The sharing policy in config.toml is wrong; the message names the line."""

    reason = "policy"


class PrivacyBudgetExceeded(ConfigError):
    """A private study would spend more than its pipeline's privacy budget left."""

    reason = "privacy-budget"


class StoreError(GridpointError):
    """The store cannot be opened, migrated or written."""

    reason = "store"


class UnstorableRecord(StoreError):
    """The database refused one record (a value it cannot hold); the others are stored."""

    reason = "unstorable"


class EnvelopeError(GridpointError):
    """A signed envelope or signed request does not verify."""

    reason = "invalid-envelope"


class BadSignature(EnvelopeError):
    """The signature, the signer's key or the content id does not match the bytes."""

    reason = "bad-signature"


class UnknownSigner(EnvelopeError):
    """The signer is not among this node's trusted peers."""

    reason = "untrusted-signer"


class WrongPayloadType(EnvelopeError):
    """The envelope carries a payload of another type than the one expected here."""

    reason = "wrong-payload-type"


class ClockOutOfWindow(EnvelopeError):
    """The signing time is outside the accepted window (too old, or in the future)."""

    reason = "clock-out-of-window"


class Replayed(EnvelopeError):
    """The nonce was already used within the freshness window."""

    reason = "replayed"


class OversizedRecord(EnvelopeError):
    """The signed record is larger than this node accepts (see catalog.MAX_RECORD_BYTES)."""

    reason = "oversized"


class BadStatement(EnvelopeError):
    """A statement breaks its rules: a tombstone of another author's record, a rotation not
    signed by both keys, a revocation of a key that is not the signer's."""

    reason = "bad-statement"


class Withdrawn(EnvelopeError):
    """The record was withdrawn by its author; no copy of it is taken in again."""

    reason = "withdrawn"


class RevokedKey(EnvelopeError):
    """Signed by a revoked key, or by a retired key after its rotation."""

    reason = "revoked-key"


class OutsideAudience(EnvelopeError):
    """The record's signed audience does not include the node it was offered to."""

    reason = "outside-audience"


class PeerError(GridpointError):
    """A peer is unreachable, refused us, or answered something unusable."""

    reason = "peer"


class FingerprintMismatch(PeerError):
    """The peer presented a TLS certificate other than the pinned one."""

    reason = "fingerprint-mismatch"


class PeerUnavailable(PeerError):
    """The peer did not answer in time (down, unreachable, or refused our certificate)."""

    reason = "peer-unavailable"


class Busy(PeerUnavailable):
    """The peer cannot serve this now but may shortly (every download slot taken, or the
    connection briefly down): the one refusal a caller retries after a pause."""

    reason = "busy"


class PeerRefused(PeerError):
    """The peer answered and refused the request (we are not trusted, stale clock, ...)."""

    reason = "peer-refused"


class PeerMisbehaved(PeerError):
    """The peer answered something no correct peer sends (a cursor that does not move, ...)."""

    reason = "peer-misbehaved"


class PeerConflict(PeerError):
    """Adding this peer would replace another trusted entry; it needs an explicit --replace."""

    reason = "peer-conflict"


class ArtifactError(GridpointError):
    """A kept model cannot be stored, found, read or fetched as asked."""

    reason = "artifact"


class ArtifactNotFound(ArtifactError):
    """No artifact has this id (or unique prefix) on the node asked."""

    reason = "artifact-not-found"


class NotShared(ArtifactError):
    """The caller is not among the readers of the artifact it asked for."""

    reason = "not-shared"


class RegistryError(ArtifactError):
    """A registered model name, version or alias is malformed, unknown, or in use."""

    reason = "registry"


class ProtectedAlias(RegistryError):
    """Moving or removing a protected alias (config.toml [registry]) needs --force."""

    reason = "protected-alias"


class SignatureInvalid(ArtifactError):
    """An exported model does not match its model-signing bundle or its identity binding."""

    reason = "signature-invalid"


class TrainerError(GridpointError):
    """Local training cannot run as asked (study file, pipeline, model)."""

    reason = "trainer"


class StudyConfigError(TrainerError, ConfigError):
    """The study file is invalid; raised before anything trains."""

    reason = "study-config"


class PipelineError(TrainerError):
    """The private data pipeline is missing, failed, or returned unusable data."""

    reason = "pipeline"


class ModelLoadError(TrainerError):
    """The base model cannot be loaded from local files."""

    reason = "model-load"


def in_words(exc: BaseException) -> str:
    """What an OS, network or database exception means, in words, for a one-line error.

    For the user's own terminal: callers that send an error to a peer use their own text.
    """
    if isinstance(exc, ConnectionRefusedError):
        return "nothing listens there (connection refused)"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake failed ({exc.reason or 'no reason given'})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
