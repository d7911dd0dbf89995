"""Publishing to and admitting into the catalog: the only paths by which records enter it.

publish() signs a validated record with the node's key and stores it. admit() checks a
received envelope — size, signature, trusted signer, payload type, record rules — before the
store ever sees it. Relaying does not launder trust: a record is admitted only when its
*author* is trusted, whoever forwarded it.

Must never: keep bytes of an envelope that no signature covers (what is stored and served is
the canonical re-encoding of its known fields; the signed payload stays byte-exact), decode a
payload larger than MAX_RECORD_BYTES, or raise anything from admit() but an EnvelopeError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gridpoint.errors import EnvelopeError, OversizedRecord, RecordError
from gridpoint.node.protocol.envelope import (
    canonical_envelope,
    content_id,
    sign_envelope,
    verify_envelope,
)
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE, decode_record, encode_record
from gridpoint.node.store.base import CatalogStore, StoredRecord
from gridpoint.schema import RunRecord, validate_record
from gridpoint.v1 import envelope_pb2

__all__ = ["MAX_RECORD_BYTES", "PublishResult", "admit", "publish", "sign_record", "trust_check"]

#: Largest signed record payload published or admitted (a typical record is under 2 KiB; a
#: curve of MAX_CURVE_POINTS points fits). Bounds what one record costs to decode and store.
MAX_RECORD_BYTES = 256 * 1024


@dataclass(frozen=True)
class PublishResult:
    """The id of a published record, and whether it was new to this catalog."""

    id: str
    new: bool


def sign_record(identity: NodeIdentity, record: RunRecord) -> StoredRecord:
    """Validates, serializes once and signs a record."""
    payload = encode_record(validate_record(record))
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordError(
            f"the record is {len(payload)} bytes signed, over the limit of {MAX_RECORD_BYTES}; "
            "publish a shorter curve or fewer values"
        )
    envelope = sign_envelope(identity, payload, RUN_RECORD_TYPE)
    return StoredRecord(
        id=content_id(identity.node_id, payload),
        signer_id=identity.node_id,
        envelope=canonical_envelope(envelope),
        signed_at_ms=envelope.signed_at_unix_ms,
        record=record,
    )


def publish(store: CatalogStore, identity: NodeIdentity, record: RunRecord) -> PublishResult:
    """Signs and stores a record; publishing equal content again stores nothing new, and a
    record its author withdrew is refused (RecordError)."""
    stored = sign_record(identity, record)
    if store.get_record(stored.id) is not None:
        return PublishResult(stored.id, new=False)
    result = store.add_records([stored])
    if result.withdrawn:
        raise RecordError(
            f"record {stored.id[:12]} was withdrawn by its author: it is not published again "
            "(change the record to publish a new one)"
        )
    return PublishResult(stored.id, new=result.new == 1)


def trust_check(store: CatalogStore, self_id: str) -> Callable[[str], bool]:
    """A predicate: is this signer us or one of our trusted peers (read now)?"""
    trusted = {p.node_id for p in store.list_peers()} | {self_id}
    return trusted.__contains__


def admit(envelope: envelope_pb2.SignedEnvelope, is_trusted: Callable[[str], bool]) -> StoredRecord:
    """Verifies a received record envelope; raises an EnvelopeError (reason says why)."""
    if len(envelope.payload) > MAX_RECORD_BYTES:
        raise OversizedRecord(
            f"record of {len(envelope.payload)} bytes is over the limit of {MAX_RECORD_BYTES}"
        )
    verified = verify_envelope(envelope, expected_type=RUN_RECORD_TYPE, is_trusted=is_trusted)
    try:
        record = validate_record(decode_record(verified.payload))
    except RecordError as exc:
        raise EnvelopeError(f"signed payload is not a valid record: {exc}") from exc
    return StoredRecord(
        id=verified.id,
        signer_id=verified.signer_id,
        envelope=canonical_envelope(envelope),
        signed_at_ms=verified.signed_at_ms,
        record=record,
    )
