"""The serving side of the sharing policy: what each peer receives, by sync and live query.

For every stored record the database says which rule it matches first and whether its signed
audience (if any) names the caller; here that becomes one of three answers:
- withheld: outside the audience, or the rule's groups leave the caller out;
- as stored: the rule sends everything to every trusted peer (the default), or the record is
  another author's, sent whole to a group (a relay can only cut, never widen);
- a variant: this node's own record for a restricted audience or with parts left out. A
  signature covers the whole payload, so the variant is a record of its own, signed once per
  (record, audience, parts), kept (store: shared_variants) and served alike to every peer of
  that share; its audience names the group's members, so no relay can widen it. Another
  author's record that a rule would cut parts of is withheld: only its author could sign less.
Statements go to every trusted peer, before records. A caller may ask for a page's records
by reference only (SyncRequest.refs_only) and then fetch the ones it lacks (fetch()), so a
record several peers relay reaches it in full once; what is noted as sent is what was fetched.
The sync cursor carries the positions
in records and statements and a digest of the caller's share: when the share changes, the
caller is offered every record again under the new one. Every envelope sent is noted in the
ledger, with the rule that sent it.

Must never serve a record outside its audience or a rule's groups, nor sign a variant of a
record another author signed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

from gridpoint.errors import RequestError
from gridpoint.node.catalog import sign_record
from gridpoint.node.control.ledger import Ledger
from gridpoint.node.control.policy import PolicySource, SharingPolicy, SharingRule
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.envelope import content_id
from gridpoint.node.protocol.serde import decode_record
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.control_base import ServedEnvelope
from gridpoint.node.store.key_chain import KeyChain
from gridpoint.node.store.query_filter import FilterNode, OrderBy
from gridpoint.v1 import catalog_pb2, envelope_pb2

__all__ = [
    "AS_STORED",
    "MAX_SCANNED",
    "NOT_IN_GROUPS",
    "OUTSIDE_AUDIENCE",
    "PARTS_CUT",
    "STATEMENTS_RULE",
    "VARIANT",
    "Sharing",
    "decide",
    "parse_cursor",
]

#: The rule name the ledger gives statements (every trusted peer receives them).
STATEMENTS_RULE = "statements"
#: Most records one Sync answer reads past when the policy withholds them all.
MAX_SCANNED = 50_000
#: What decide() says of a record and a caller.
AS_STORED = "sent as stored"
VARIANT = "sent as this node's signed variant for the rule's audience and parts"
OUTSIDE_AUDIENCE = "withheld: its signed audience leaves the peer out"
NOT_IN_GROUPS = "withheld: the peer is in none of the rule's groups"
PARTS_CUT = "withheld: another author's record, which the rule would cut parts of"
_CURSOR = re.compile(r"([0-9]{1,19})?(?:\.([0-9]{1,19})(?:\.([0-9a-f]{8}))?)?")
_MAX_SEQ = 2**63 - 1
# Variants kept in memory besides the store, so a page of them costs no extra reads.
_CACHED_VARIANTS = 10_000


def parse_cursor(cursor: str) -> tuple[int, int, str]:
    """(record position, statement position, share digest) of a cursor this node issued."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise RequestError("sync cursor is not one this node issued")
    records, statements, digest = match.groups()
    r, s = int(records or 0), int(statements or 0)
    if max(r, s) > _MAX_SEQ:
        raise RequestError("sync cursor is not one this node issued")
    return r, s, digest or ""


def decide(
    rule: SharingRule,
    policy: SharingPolicy,
    caller_ids: frozenset[str],
    *,
    in_audience: bool,
    ours: bool,
) -> str:
    """How a record goes to a caller: AS_STORED, VARIANT, or why it is withheld. Of the
    record it takes only the rule it matched, whether its audience names the caller and
    whether this node signed it, so one call's decisions can be kept by those three."""
    if not in_audience:
        return OUTSIDE_AUDIENCE
    if not policy.admits(rule, caller_ids):
        return NOT_IN_GROUPS
    if rule.open_to_all and rule.whole:
        return AS_STORED
    if ours:
        return VARIANT
    # Another author's record: sent whole to the rule's groups, never trimmed.
    return AS_STORED if rule.whole else PARTS_CUT


def _ref(served: _Sent, stored_id: str) -> catalog_pb2.RecordRef:
    """What a refs_only page says of a record: the id the caller would receive, and the
    stored one to fetch it by when they differ (a variant)."""
    ref = catalog_pb2.RecordRef(id=bytes.fromhex(served.item_id))
    if served.item_id != stored_id:
        ref.stored_id = bytes.fromhex(stored_id)
    return ref


def _cursor(records: int, statements: int, digest: str) -> str:
    return f"{records}.{statements}" + (f".{digest}" if digest else "")


@dataclass(frozen=True)
class _Caller:
    """One call's view: the caller's ids (its key chain), ours, and the policy in force."""

    ids: frozenset[str]
    own_ids: frozenset[str]
    chain: KeyChain
    policy: SharingPolicy
    # decide()'s answers in this call, by its inputs from the record: a page or answer's
    # hundreds of records fall under a few rules.
    decided: dict[tuple[int, bool, bool], tuple[SharingRule, str]] = field(default_factory=dict)

    def ruling(self, item: ServedEnvelope) -> tuple[SharingRule, str]:
        """The rule item matched, and what decide() says of it for this caller."""
        key = (item.rule, item.in_audience, item.signer_id in self.own_ids)
        known = self.decided.get(key)
        if known is None:
            rule = self.policy.rule_at(item.rule)
            what = decide(rule, self.policy, self.ids, in_audience=key[1], ours=key[2])
            known = self.decided[key] = (rule, what)
        return known


@dataclass(slots=True)  # not frozen: one per record sent (store.control_base.ServedEnvelope)
class _Sent:
    envelope: bytes
    item_id: str
    subject_id: str
    rule: str


class Sharing:
    """Sync pages and live answers of one node, cut by its sharing policy."""

    def __init__(
        self,
        home: NodeHome,
        store: CatalogStore,
        policy: PolicySource,
        ledger: Ledger,
        budget: int,
    ) -> None:
        self._home = home
        self._store = store
        self._policy = policy
        self._ledger = ledger
        self._budget = budget
        self._variants: dict[tuple[str, str], tuple[str, bytes]] = {}

    def _caller(self, caller: str) -> _Caller:
        chain = self._store.key_chain()
        return _Caller(
            frozenset(chain.identity(caller)),
            frozenset(chain.identity(self._home.identity.node_id)),
            chain,
            self._policy.current(),
        )

    def sync_page(
        self, caller: str, request: catalog_pb2.SyncRequest, limit: int
    ) -> catalog_pb2.SyncPage:
        """Statements after the cursor first; then the records the caller may receive (by
        reference only when the request asks so)."""
        refs_only = request.refs_only
        records, statements, digest = parse_cursor(request.cursor)
        view = self._caller(caller)
        share = view.policy.digest(view.ids)
        if digest != share:
            records = 0
        said = self._store.statements_after(statements, limit)
        if said.envelopes:
            out, sent, last = catalog_pb2.SyncPage(has_more=True), [], statements
            size = 0
            for envelope, seq in zip(said.envelopes, said.cursors, strict=True):
                size += len(envelope) + 8
                if size > self._budget and out.envelopes:
                    break
                message = envelope_pb2.SignedEnvelope.FromString(envelope)
                out.envelopes.append(message)
                statement_id = content_id(message.signer_id, message.payload)
                sent.append((statement_id, statement_id, STATEMENTS_RULE))
                last = seq
            out.next_cursor = _cursor(records, last, share)
            self._ledger.note(caller, "statement", sent)
            return out
        out = catalog_pb2.SyncPage()
        size, last, noted, scanned = 0, records, [], 0
        # A page whose records are all withheld would end the caller's round (an empty page
        # says nothing more is there): read on, within MAX_SCANNED records, until one is sent.
        while not out.envelopes and scanned < MAX_SCANNED:
            page = self._store.records_for_peer(last, limit, view.policy.conditions, view.ids)
            scanned += max(1, len(page.items))
            out.next_cursor = _cursor(page.next_cursor, statements, share)
            out.has_more = page.has_more
            for item in page.items:
                served = self._serve(item, view)
                if served is not None and refs_only:
                    out.refs.append(_ref(served, item.record_id))
                elif served is not None:
                    size += len(served.envelope) + 8
                    if size > self._budget and out.envelopes:
                        # Stop before the message limit; the peer resumes after the last sent.
                        out.next_cursor, out.has_more = _cursor(last, statements, share), True
                        break
                    out.envelopes.append(envelope_pb2.SignedEnvelope.FromString(served.envelope))
                    noted.append((served.item_id, served.subject_id, served.rule))
                last = item.seq
            if not page.has_more or out.refs:
                break
        self._ledger.note(caller, "record", noted)
        return out

    def fetch(self, caller: str, ids: list[str]) -> tuple[list[bytes], int]:
        """The envelopes of the stored records ids names that the caller may have, as a sync
        page would serve them, cut before the message budget; and how many of ids, from the
        first, the answer covers."""
        view = self._caller(caller)
        ruled = self._store.ruled_records(ids, view.policy.conditions, view.ids)
        out: list[bytes] = []
        noted: list[tuple[str, str, str]] = []
        size, answered = 0, 0
        for record_id in ids:
            item = ruled.get(record_id)
            served = None if item is None else self._serve(item, view)
            if served is not None:
                size += len(served.envelope) + 8
                if size > self._budget and out:
                    break
                out.append(served.envelope)
                noted.append((served.item_id, served.subject_id, served.rule))
            answered += 1
        self._ledger.note(caller, "record", noted)
        return out, answered

    def answer(
        self,
        caller: str,
        where: FilterNode | None,
        limit: int,
        order_by: OrderBy | None,
        max_bytes: int,
    ) -> list[bytes]:
        """A live query's matching envelopes (read with their rules, in one statement), as
        the policy lets the caller have them."""
        view = self._caller(caller)
        ruled = self._store.query_ruled(
            where,
            limit=limit,
            order_by=order_by,
            max_bytes=max_bytes,
            rules=view.policy.conditions,
            reader_ids=view.ids,
        )
        out, noted = [], []
        for item in ruled:
            served = self._serve(item, view)
            if served is not None:
                out.append(served.envelope)
                noted.append((served.item_id, served.subject_id, served.rule))
        self._ledger.note(caller, "answer", noted)
        return out

    def _serve(self, item: ServedEnvelope, view: _Caller) -> _Sent | None:
        rule, what = view.ruling(item)
        if what == AS_STORED:
            return _Sent(item.envelope, item.record_id, item.record_id, rule.name)
        return self._variant(item, rule, view) if what == VARIANT else None

    def _variant(self, item: ServedEnvelope, rule: SharingRule, view: _Caller) -> _Sent | None:
        record = decode_record(envelope_pb2.SignedEnvelope.FromString(item.envelope).payload)
        audience = set(record.audience)
        if not rule.open_to_all:
            members = view.policy.members(rule)
            # A member that rotated its key is named by its current id as well.
            members = members | {view.chain.head(m) for m in members}
            audience = audience & members if audience else set(members)
            if not audience:
                return None
        parts = sorted(rule.parts)
        key = hashlib.sha256(
            f"{item.record_id}|{','.join(sorted(audience))}|{','.join(parts)}".encode()
        ).hexdigest()
        cached = self._variants.get((item.record_id, key))
        if cached is None:
            envelope = self._store.variant(item.record_id, key)
            if envelope is None:
                variant = replace(
                    record,
                    audience=tuple(sorted(audience)),
                    curve=record.curve if "curves" in rule.parts else (),
                    search_space=record.search_space if "search_space" in rule.parts else (),
                    model=record.model
                    if "base_model" in rule.parts
                    else replace(record.model, base=""),
                    parents=record.parents if "lineage" in rule.parts else (),
                )
                signed = sign_record(self._home.identity, variant)
                envelope = self._store.add_variant(item.record_id, key, signed.id, signed.envelope)
            message = envelope_pb2.SignedEnvelope.FromString(envelope)
            cached = (content_id(message.signer_id, message.payload), envelope)
            if len(self._variants) >= _CACHED_VARIANTS:
                self._variants.clear()
            self._variants[(item.record_id, key)] = cached
        return _Sent(cached[1], cached[0], item.record_id, rule.name)
