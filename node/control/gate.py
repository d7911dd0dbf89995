"""The admission gate: what a node takes in, records and statements alike, and why not.

A Gate is read from the store once per sync round (and again after a page of statements):
the trusted peers, this node's own ids, the key chain and, when the node follows
introductions (max_depth > 0; sync passes [introductions] of config.toml, everything else,
live queries included, loads the default 0), the authors vouches introduce
(introductions.py). admit() sends a record through catalog.admit (signature, an author
trusted or introduced, record rules) and then through the owner's
checks: a key revoked, or retired by a rotation before the record was signed, is refused; a
record whose signed audience leaves this node out is refused. A statement goes to its rule
in statements.RULES. Withdrawn ids are refused by the store itself, in the transaction that
would store them (store/sql_statements.py), so no race lets one back in.

Must never raise anything from admit() but an EnvelopeError, nor trust an earlier key of an
identity for what it signed after its rotation, nor take in an introduced author's record
unless it was loaded with max_depth > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gridpoint.errors import (
    OutsideAudience,
    OversizedRecord,
    RevokedKey,
    UnknownSigner,
    WrongPayloadType,
)
from gridpoint.node.catalog import admit as admit_record
from gridpoint.node.control.introductions import Introduction, introductions
from gridpoint.node.control.statements import MAX_STATEMENT_BYTES, RULES
from gridpoint.node.protocol.envelope import canonical_envelope, verify_envelope
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE
from gridpoint.node.store.base import CatalogStore, StoredRecord
from gridpoint.node.store.control_base import (
    KeyEvent,
    KeyRevocation,
    KeyRotation,
    StoredStatement,
    Unvouch,
    Vouch,
    VouchEntry,
)
from gridpoint.node.store.key_chain import KeyChain
from gridpoint.v1 import envelope_pb2

__all__ = ["Gate"]


class Gate:
    """Who and what this node admits now. Thread-safe to read; note() is for one thread."""

    def __init__(
        self,
        store: CatalogStore,
        self_id: str,
        trusted: set[str],
        chain: KeyChain,
        vouches: Sequence[VouchEntry] = (),
        max_depth: int = 0,
    ) -> None:
        self._store = store
        self.self_id = self_id
        self._trusted = trusted | {self_id}
        self.chain = chain
        self.own_ids = frozenset(chain.identity(self_id))
        self.max_depth = max_depth
        self._vouches = {(v.voucher_id, v.author_id): v for v in vouches}
        self.introduced = introductions(self._vouches.values(), self.trusted, chain, max_depth)

    @classmethod
    def load(cls, store: CatalogStore, self_id: str, max_depth: int = 0) -> Gate:
        """The gate as the store says now; introduced authors only with max_depth > 0."""
        return cls(
            store,
            self_id,
            {p.node_id for p in store.list_peers()},
            store.key_chain(),
            store.vouches() if max_depth > 0 else (),
            max_depth,
        )

    def reload(self) -> Gate:
        """The gate as the store says now, following introductions as this one does."""
        return Gate.load(self._store, self.self_id, self.max_depth)

    def trusted(self, signer_id: str) -> bool:
        """Is this key one of a trusted identity (a peer's or ours, by any key of its chain:
        a peer that trusted an earlier key follows its rotations)?"""
        return signer_id in self._trusted or not self._trusted.isdisjoint(
            self.chain.identity(signer_id)
        )

    def require_trusted(self, signer_id: str) -> None:
        if not self.trusted(signer_id):
            raise UnknownSigner(f"signer {signer_id} is not a trusted peer of this node")

    def introduction(self, signer_id: str) -> Introduction | None:
        """How this key's identity is introduced here (None: it is not, or it is trusted)."""
        return self.introduced.get(self.chain.head(signer_id))

    def accepts(self, signer_id: str) -> bool:
        """Does this node take in what this key signs: trusted, or introduced?"""
        return self.trusted(signer_id) or self.introduction(signer_id) is not None

    def require_author(self, signer_id: str) -> None:
        """UnknownSigner unless this node takes in what this key signs."""
        if not self.accepts(signer_id):
            raise UnknownSigner(
                f"signer {signer_id} is not a trusted peer of this node"
                + (" (nor introduced by a vouch it follows)" if self.max_depth > 0 else "")
            )

    def require_voucher(self, signer_id: str) -> None:
        """UnknownSigner unless this key's vouches can count here: trusted, or introduced
        with reach left."""
        if self.trusted(signer_id):
            return
        found = self.introduction(signer_id)
        if found is None:
            raise UnknownSigner(
                f"vouch signed by {signer_id}, which this node neither trusts nor follows "
                "introductions to"
            )
        if found.reach < 1:
            raise UnknownSigner(
                f"vouch signed by {signer_id}, introduced here at depth {found.depth}: its "
                f"vouches would reach beyond what this node follows (max_depth "
                f"{self.max_depth}, and the depth its own introduction allows)"
            )

    def check_key(self, signer_id: str, signed_at_ms: int) -> None:
        """RevokedKey for a revoked key, or a retired one signing after its rotation."""
        if self.chain.revoked(signer_id):
            raise RevokedKey(f"key {signer_id} is revoked: nothing it signs is taken in")
        rotated_at = self.chain.rotated_at_ms(signer_id)
        if rotated_at is not None and signed_at_ms >= rotated_at:
            raise RevokedKey(
                f"key {signer_id} was rotated to {self.chain.successor(signer_id)}; "
                "it signed this after its rotation"
            )

    def authors(self, record_ids: Sequence[str]) -> dict[str, str]:
        """The signer of each of these records this node holds."""
        return self._store.record_signers(record_ids)

    def admit(self, envelope: envelope_pb2.SignedEnvelope) -> StoredRecord | StoredStatement:
        """A verified record or statement; an EnvelopeError (its reason says why) otherwise."""
        if envelope.payload_type == RUN_RECORD_TYPE:
            return self._admit_record(envelope)
        rule = RULES.get(envelope.payload_type)
        if rule is None:
            raise WrongPayloadType(
                f"expected a record or a statement, got {envelope.payload_type[:80] or 'no type'}"
            )
        if len(envelope.payload) > MAX_STATEMENT_BYTES:
            raise OversizedRecord(
                f"statement of {len(envelope.payload)} bytes is over the limit of "
                f"{MAX_STATEMENT_BYTES}"
            )
        # Who may sign each statement is its rule's to say (a key may revoke itself).
        verified = verify_envelope(
            envelope, expected_type=envelope.payload_type, is_trusted=lambda _signer: True
        )
        statement = rule(verified, self)
        return StoredStatement(
            id=verified.id,
            signer_id=verified.signer_id,
            payload_type=verified.payload_type,
            envelope=canonical_envelope(envelope),
            signed_at_ms=verified.signed_at_ms,
            statement=statement,
        )

    def _admit_record(self, envelope: envelope_pb2.SignedEnvelope) -> StoredRecord:
        stored = admit_record(envelope, self.accepts)
        self.check_key(stored.signer_id, stored.signed_at_ms)
        audience = stored.record.audience
        if audience and self.own_ids.isdisjoint(audience):
            raise OutsideAudience(
                f"record {stored.id[:12]} is shared by its author with {len(audience)} node(s), "
                "not with this one"
            )
        return stored

    def note(self, statement: StoredStatement) -> None:
        """Takes an admitted statement into account for what follows it in the same page."""
        events = {e.node_id: e for e in self.chain.events()}
        st = statement.statement
        if isinstance(st, KeyRotation):
            events[st.old_id] = replace(
                events.get(st.old_id, KeyEvent(st.old_id)),
                successor_id=st.new_id,
                rotated_at_ms=statement.signed_at_ms,
                successor_cert_pem=st.tls_cert_pem,
            )
        elif isinstance(st, KeyRevocation):
            events[st.revoked_id] = replace(
                events.get(st.revoked_id, KeyEvent(st.revoked_id)), revoked=True
            )
        elif isinstance(st, Vouch | Unvouch):
            key = (statement.signer_id, st.author_id)
            held = self._vouches.get(key)
            if held is None or (held.signed_at_ms, held.statement_id) < (
                statement.signed_at_ms,
                statement.id,
            ):
                self._vouches[key] = VouchEntry(
                    statement.signer_id,
                    st.author_id,
                    st.depth if isinstance(st, Vouch) else 0,
                    statement.signed_at_ms,
                    statement.id,
                )
        else:
            return
        self.chain = KeyChain(events.values())
        self.own_ids = frozenset(self.chain.identity(self.self_id))
        self.introduced = introductions(
            self._vouches.values(), self.trusted, self.chain, self.max_depth
        )
