"""`catalog withdraw`: take back records this node published, by id, study or filter.

The records are this node's own (signed by its key or an earlier key of its chain); their
sharing variants are withdrawn with them. The tombstones are checked by the same rules a
peer applies, stored (which deletes the payloads here) and carried by sync to every peer,
relayed on from there. A record of another author is refused: only its author can withdraw
it.

Must never sign a tombstone for a record another node signed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gridpoint.errors import RecordError, RequestError
from gridpoint.node.control.gate import Gate
from gridpoint.node.control.statements import sign_tombstones
from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.node.store.base import MAX_QUERY_LIMIT, CatalogStore
from gridpoint.node.store.query_filter import Comparison, FilterNode, parse_filter
from gridpoint.v1 import envelope_pb2

__all__ = ["Withdrawal", "withdraw"]

_ID = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class Withdrawal:
    """What a withdraw did: the records (and variants) withdrawn, and the tombstones signed."""

    record_ids: tuple[str, ...]
    variant_ids: tuple[str, ...]
    tombstone_ids: tuple[str, ...]


def _own(store: CatalogStore, gate: Gate, where: FilterNode | None) -> list[str]:
    return [r.id for r in store.query(where, limit=MAX_QUERY_LIMIT) if r.signer_id in gate.own_ids]


def _by_id(store: CatalogStore, gate: Gate, given: str) -> str:
    if not _ID.fullmatch(given):
        raise RequestError(f"{given[:70]!r} is not a record id (8 to 64 lowercase hex digits)")
    found = store.query(Comparison("id", "LIKE", f"{given}%"), limit=2)
    if not found:
        raise RequestError(f"no record {given} in this catalog (see `catalog query --withdrawn`)")
    if len(found) > 1:
        raise RequestError(f"{given} names more than one record: give more of the id")
    if found[0].signer_id not in gate.own_ids:
        raise RecordError(
            f"record {found[0].id[:12]} was signed by node {found[0].signer_id}: only its "
            "author can withdraw it"
        )
    return found[0].id


def withdraw(
    home: NodeHome,
    store: CatalogStore,
    ids: list[str],
    *,
    study: str | None = None,
    filter_text: str | None = None,
    reason: str = "",
) -> Withdrawal:
    """Withdraws the named records of this node; RequestError if that names none."""
    gate = Gate.load(store, home.identity.node_id)
    targets = [_by_id(store, gate, given) for given in ids]
    if study is not None:
        targets += _own(
            store, gate, Comparison("study", "=", pseudonym(home.secret, "study", study))
        )
    if filter_text is not None:
        targets += _own(store, gate, parse_filter(filter_text))
    if not targets:
        raise RequestError("nothing to withdraw: no record of this node matches")
    variants = [v for v in store.variants_of(targets) if v not in targets]
    tombstones = sign_tombstones(home.identity, [*targets, *variants], reason)
    for tombstone in tombstones:
        gate.admit(envelope_pb2.SignedEnvelope.FromString(tombstone.envelope))
    store.add_statements(tombstones)
    return Withdrawal(tuple(sorted(set(targets))), tuple(variants), tuple(t.id for t in tombstones))
