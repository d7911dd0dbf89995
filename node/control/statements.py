"""Statements on the wire: signing them, and the one verification rule of each type.

A statement (statements.proto) is signed into a SignedEnvelope like a record and named by
the same content id. RULES holds one rule per payload type: decode the payload, check what
it claims against the Gate (who is trusted, the key chain, the records held) and return the
domain statement the store applies (store/sql_statements.py). A new type is one rule here
and one table there.

Must never accept a tombstone for a record another author signed, a rotation the new key did
not sign, a revocation of a key that is not the signer's (nor an earlier key of its chain),
or a vouch a key signs for itself or that reaches further than MAX_VOUCH_DEPTH; each is a
BadStatement whose message names what is wrong. A vouch whose signer this node neither trusts
nor follows far enough (introductions.py) is UnknownSigner: kept for later, like a record of
an author not trusted yet. Must never decode a payload larger
than MAX_STATEMENT_BYTES.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from google.protobuf.message import DecodeError

from gridpoint.errors import BadStatement, RevokedKey, UnknownSigner
from gridpoint.node.control.introductions import MAX_VOUCH_DEPTH
from gridpoint.node.protocol.envelope import (
    VerifiedEnvelope,
    canonical_envelope,
    content_id,
    now_ms,
    sign_envelope,
    signing_message,
)
from gridpoint.node.protocol.identity import NodeIdentity, node_id_of, verify_signature
from gridpoint.node.protocol.revocation import (
    MAX_STATEMENT_BYTES,
    REVOCATION_TYPE,
    read_revocation_certificate,
    revocation_certificate,
    revocation_envelope,
)
from gridpoint.node.protocol.tls import node_id_of_certificate
from gridpoint.node.store.control_base import (
    KeyRevocation,
    KeyRotation,
    Statement,
    StoredStatement,
    Tombstone,
    Unvouch,
    Vouch,
)
from gridpoint.schema.validation import is_node_id
from gridpoint.v1 import envelope_pb2, statements_pb2

if TYPE_CHECKING:
    from gridpoint.node.control.gate import Gate

__all__ = [
    "MAX_REASON_CHARS",
    "MAX_STATEMENT_BYTES",
    "MAX_TOMBSTONE_IDS",
    "RULES",
    "STATEMENT_TYPES",
    "read_revocation_certificate",
    "revocation_certificate",
    "sign_revocation",
    "sign_rotation",
    "sign_tombstones",
    "sign_unvouch",
    "sign_vouch",
]

#: Most record ids one tombstone names (withdrawing more signs several).
MAX_TOMBSTONE_IDS = 1000
#: Longest reason a tombstone or revocation carries.
MAX_REASON_CHARS = 200

TOMBSTONE_TYPE = statements_pb2.Tombstone.DESCRIPTOR.full_name
ROTATION_TYPE = statements_pb2.KeyRotation.DESCRIPTOR.full_name
VOUCH_TYPE = statements_pb2.Vouch.DESCRIPTOR.full_name
UNVOUCH_TYPE = statements_pb2.Unvouch.DESCRIPTOR.full_name
_ROTATION_TAG = b"gridpoint.v1/key-rotation"
_RECORD_ID = re.compile(r"[0-9a-f]{64}")
_REASON = re.compile(rf"[\x20-\x7e]{{0,{MAX_REASON_CHARS}}}")


def _reason(text: str) -> str:
    if not _REASON.fullmatch(text):
        raise BadStatement(
            f"a reason is at most {MAX_REASON_CHARS} printable ASCII characters, on one line"
        )
    return text


_M = TypeVar(
    "_M",
    statements_pb2.Tombstone,
    statements_pb2.KeyRotation,
    statements_pb2.KeyRevocation,
    statements_pb2.Vouch,
    statements_pb2.Unvouch,
)


def _decode(kind: type[_M], payload: bytes) -> _M:
    try:
        message = kind.FromString(payload)
    except DecodeError:
        raise BadStatement(f"payload is not a valid {kind.DESCRIPTOR.full_name}") from None
    if message.schema_version != 1:
        raise BadStatement(f"{kind.DESCRIPTOR.name} schema_version must be 1")
    return message


def _verify_tombstone(verified: VerifiedEnvelope, gate: Gate) -> Statement:
    msg = _decode(statements_pb2.Tombstone, verified.payload)
    ids = tuple(msg.record_ids)
    if not 1 <= len(ids) <= MAX_TOMBSTONE_IDS:
        raise BadStatement(f"a tombstone names 1 to {MAX_TOMBSTONE_IDS} record ids")
    if list(ids) != sorted(set(ids)) or not all(_RECORD_ID.fullmatch(i) for i in ids):
        raise BadStatement(
            "a tombstone's record ids are 64 lowercase hex digits, sorted, once each"
        )
    gate.require_author(verified.signer_id)
    gate.check_key(verified.signer_id, verified.signed_at_ms)
    for record_id, author in gate.authors(ids).items():
        if not gate.chain.speaks_for(verified.signer_id, author):
            raise BadStatement(
                f"tombstone for record {record_id[:12]}, which another author ({author}) "
                "signed: only a record's author can withdraw it"
            )
    return Tombstone(ids, _reason(msg.reason))


def _rotation_message(old: bytes, new: bytes, cert: bytes) -> bytes:
    return signing_message(_ROTATION_TAG, old, new, cert)


def _verify_rotation(verified: VerifiedEnvelope, gate: Gate) -> Statement:
    msg = _decode(statements_pb2.KeyRotation, verified.payload)
    if msg.old_public_key != verified.envelope.signer_public_key:
        raise BadStatement("a key rotation must be signed by the key it retires")
    new_id = node_id_of(msg.new_public_key)
    if new_id == verified.signer_id:
        raise BadStatement("a key rotation must move to another key")
    try:
        verify_signature(
            msg.new_public_key,
            msg.new_key_signature,
            _rotation_message(msg.old_public_key, msg.new_public_key, msg.new_tls_certificate),
        )
    except Exception:
        raise BadStatement(
            "key rotation signed by one key only: the new key's signature does not verify"
        ) from None
    try:
        cert_id = node_id_of_certificate(msg.new_tls_certificate)
        x509.load_pem_x509_certificate(msg.new_tls_certificate)
    except Exception:
        raise BadStatement("the rotation's TLS certificate is not a PEM certificate") from None
    if cert_id != new_id:
        raise BadStatement("the rotation's TLS certificate is not issued to the new key's node id")
    old_id = verified.signer_id
    if not (gate.accepts(old_id) or gate.accepts(new_id)):
        raise UnknownSigner(f"rotation of key {old_id}, which this node does not trust (yet)")
    if gate.chain.revoked(old_id):
        raise RevokedKey(f"key {old_id} is revoked; its rotation is refused")
    earlier = gate.chain.successor(old_id)
    if earlier is not None and earlier != new_id:
        raise BadStatement(f"key {old_id} was already rotated to another key ({earlier})")
    return KeyRotation(old_id, new_id, bytes(msg.new_public_key), bytes(msg.new_tls_certificate))


def _verify_revocation(verified: VerifiedEnvelope, gate: Gate) -> Statement:
    msg = _decode(statements_pb2.KeyRevocation, verified.payload)
    revoked_id = node_id_of(msg.public_key)
    reason = _reason(msg.reason)
    if revoked_id == verified.signer_id:
        # A key revoking itself needs no other authority; one of a key this node does not
        # trust (yet) waits in the bounded pending table, like a record of an unknown author,
        # rather than letting a peer fill the store with revocations of made-up keys.
        gate.require_author(verified.signer_id)
        return KeyRevocation(revoked_id, reason)
    if not gate.chain.speaks_for(verified.signer_id, revoked_id):
        raise BadStatement(
            f"revocation of key {revoked_id}, which is not the signer's (nor an earlier key "
            "of its chain)"
        )
    gate.require_author(verified.signer_id)
    gate.check_key(verified.signer_id, verified.signed_at_ms)
    return KeyRevocation(revoked_id, reason)


def _author_of(author_id: str, issued_at_ms: int, verified: VerifiedEnvelope, gate: Gate) -> str:
    if issued_at_ms != verified.signed_at_ms:
        raise BadStatement("a vouch's issued_at_unix_ms must be its envelope's signing time")
    if not is_node_id(author_id):
        raise BadStatement("a vouch names its author by node id: 40 lowercase hex digits")
    if author_id == verified.signer_id or author_id in gate.chain.identity(verified.signer_id):
        raise BadStatement(f"key {verified.signer_id} vouches for itself: a vouch is for another")
    return author_id


def _verify_vouch(verified: VerifiedEnvelope, gate: Gate) -> Statement:
    msg = _decode(statements_pb2.Vouch, verified.payload)
    author = _author_of(msg.author_id, msg.issued_at_unix_ms, verified, gate)
    if not 1 <= msg.depth <= MAX_VOUCH_DEPTH:
        raise BadStatement(
            f"a vouch reaches 1 to {MAX_VOUCH_DEPTH} hops; this one says {msg.depth}"
        )
    gate.require_voucher(verified.signer_id)
    gate.check_key(verified.signer_id, verified.signed_at_ms)
    return Vouch(author, msg.depth, _reason(msg.note))


def _verify_unvouch(verified: VerifiedEnvelope, gate: Gate) -> Statement:
    msg = _decode(statements_pb2.Unvouch, verified.payload)
    author = _author_of(msg.author_id, msg.issued_at_unix_ms, verified, gate)
    # Withdrawing never widens anything: any key this node trusts or follows may.
    gate.require_author(verified.signer_id)
    gate.check_key(verified.signer_id, verified.signed_at_ms)
    return Unvouch(author, _reason(msg.reason))


#: The verification rule of each statement type, by payload type.
RULES: dict[str, Callable[[VerifiedEnvelope, Gate], Statement]] = {
    TOMBSTONE_TYPE: _verify_tombstone,
    ROTATION_TYPE: _verify_rotation,
    REVOCATION_TYPE: _verify_revocation,
    VOUCH_TYPE: _verify_vouch,
    UNVOUCH_TYPE: _verify_unvouch,
}
STATEMENT_TYPES = frozenset(RULES)


def _stored(envelope: envelope_pb2.SignedEnvelope, statement: Statement) -> StoredStatement:
    return StoredStatement(
        id=content_id(envelope.signer_id, envelope.payload),
        signer_id=envelope.signer_id,
        payload_type=envelope.payload_type,
        envelope=canonical_envelope(envelope),
        signed_at_ms=envelope.signed_at_unix_ms,
        statement=statement,
    )


def sign_tombstones(
    identity: NodeIdentity, record_ids: list[str], reason: str
) -> list[StoredStatement]:
    """Tombstones for these ids (MAX_TOMBSTONE_IDS each), signed by identity."""
    ids = sorted(set(record_ids))
    out = []
    for i in range(0, len(ids), MAX_TOMBSTONE_IDS):
        part = tuple(ids[i : i + MAX_TOMBSTONE_IDS])
        payload = statements_pb2.Tombstone(
            schema_version=1, record_ids=part, reason=_reason(reason)
        ).SerializeToString(deterministic=True)
        envelope = sign_envelope(identity, payload, TOMBSTONE_TYPE)
        out.append(_stored(envelope, Tombstone(part, reason)))
    return out


def sign_rotation(old: NodeIdentity, new: NodeIdentity, tls_cert_pem: bytes) -> StoredStatement:
    """The rotation from old to new: the payload signed by new, the envelope by old."""
    payload = statements_pb2.KeyRotation(
        schema_version=1,
        old_public_key=old.public_key,
        new_public_key=new.public_key,
        new_tls_certificate=tls_cert_pem,
        new_key_signature=new.sign(_rotation_message(old.public_key, new.public_key, tls_cert_pem)),
    ).SerializeToString(deterministic=True)
    envelope = sign_envelope(old, payload, ROTATION_TYPE)
    return _stored(envelope, KeyRotation(old.node_id, new.node_id, new.public_key, tls_cert_pem))


def sign_revocation(signer: NodeIdentity, public_key: bytes, reason: str) -> StoredStatement:
    """A revocation of public_key's key, signed by signer (that key, or a later one)."""
    envelope = revocation_envelope(signer, public_key, _reason(reason))
    return _stored(envelope, KeyRevocation(node_id_of(public_key), reason))


def sign_vouch(
    identity: NodeIdentity, author_id: str, depth: int, note: str, *, at_ms: int | None = None
) -> StoredStatement:
    """identity's vouch for author_id's records, reaching depth hops (signed now or at_ms)."""
    at = now_ms() if at_ms is None else at_ms
    payload = statements_pb2.Vouch(
        schema_version=1, author_id=author_id, depth=depth, note=_reason(note), issued_at_unix_ms=at
    ).SerializeToString(deterministic=True)
    envelope = sign_envelope(identity, payload, VOUCH_TYPE, signed_at_ms=at)
    return _stored(envelope, Vouch(author_id, depth, note))


def sign_unvouch(
    identity: NodeIdentity, author_id: str, reason: str, *, at_ms: int | None = None
) -> StoredStatement:
    """identity withdraws its vouch for author_id (signed now or at_ms)."""
    at = now_ms() if at_ms is None else at_ms
    payload = statements_pb2.Unvouch(
        schema_version=1, author_id=author_id, reason=_reason(reason), issued_at_unix_ms=at
    ).SerializeToString(deterministic=True)
    envelope = sign_envelope(identity, payload, UNVOUCH_TYPE, signed_at_ms=at)
    return _stored(envelope, Unvouch(author_id, reason))
