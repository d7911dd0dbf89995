"""`catalog query`: the local catalog, optionally merged with live answers from peers.

Peers are asked in parallel with a deadline; every envelope they send is verified like a
synced one (an untrusted author is refused whoever relayed it; so is a revoked key, a record
outside its audience, and one its author withdrew, whoever still answers with it). Results are de-duplicated
by record id and keep their provenance: which node signed the record, and where it was
found. A peer that does not answer is named in the result; it does not fail the query.
Keys whose values mix numbers and texts sort numbers first, then texts, never comparing one
with the other. Refusals are logged once per peer answer, counted by reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gridpoint.errors import (
    EnvelopeError,
    GridpointError,
    RequestError,
    Withdrawn,
    WrongPayloadType,
)
from gridpoint.node.control.gate import Gate
from gridpoint.node.home import NodeHome
from gridpoint.node.logs import log_limited
from gridpoint.node.peers.transport import Connector
from gridpoint.node.store.base import MAX_QUERY_LIMIT, CatalogStore, Peer, StoredRecord
from gridpoint.node.store.keys import key_value
from gridpoint.node.store.query_filter import OrderBy, parse_filter, parse_order_by
from gridpoint.v1.envelope_pb2 import SignedEnvelope

__all__ = ["QueryResult", "QueryRow", "run_query"]

LOCAL = "local"


@dataclass
class QueryRow:
    """A record and where it was found ("local" and/or peer node ids)."""

    record: StoredRecord
    found_at: list[str] = field(default_factory=list)


@dataclass
class QueryResult:
    """The merged rows, the peers that did not answer (why), and how many records were refused."""

    rows: list[QueryRow]
    unanswered: dict[str, str]
    refused: int = 0


def _sorted(rows: list[QueryRow], order: OrderBy) -> list[QueryRow]:
    keyed = [(key_value(r.record, order.key), r) for r in rows]
    numbers = [(v, r) for v, r in keyed if isinstance(v, float)]
    texts = [(v, r) for v, r in keyed if isinstance(v, str)]
    missing = [r for v, r in keyed if v is None]
    # Numbers before texts, each sorted on its own: a key never compares a number to a text.
    numbers.sort(key=lambda vr: vr[0], reverse=order.descending)
    texts.sort(key=lambda vr: vr[0], reverse=order.descending)
    return [r for _, r in numbers] + [r for _, r in texts] + missing


def run_query(
    home: NodeHome,
    store: CatalogStore,
    filter_text: str,
    *,
    limit: int,
    order_by: str,
    connect: Connector | None = None,
) -> QueryResult:
    """Answers a filter from the local catalog and, given a connector, from every trusted peer."""
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise RequestError(f"--limit must be between 1 and {MAX_QUERY_LIMIT}, got {limit}")
    where = parse_filter(filter_text)
    order = parse_order_by(order_by)
    rows: dict[str, QueryRow] = {}
    for record in store.query(where, limit=limit, order_by=order):
        rows[record.id] = QueryRow(record, [LOCAL])
    result = QueryResult(rows=[], unanswered={})
    if connect is not None:
        peers = store.list_peers()
        gate = Gate.load(store, home.identity.node_id)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(peers)))) as pool:
            answers = list(
                pool.map(lambda p: _ask(connect, p, filter_text, limit, order_by), peers)
            )
        for peer, answer in zip(peers, answers, strict=True):
            if isinstance(answer, str):
                result.unanswered[peer.node_id] = answer
                continue
            refused: Counter[str] = Counter()
            admitted = []
            for envelope in answer:
                try:
                    outcome = gate.admit(envelope)
                except EnvelopeError as exc:
                    refused[exc.reason] += 1
                    continue
                if isinstance(outcome, StoredRecord):
                    admitted.append(outcome)
                else:
                    refused[WrongPayloadType.reason] += 1
            gone = store.withdrawn_of({r.id: r.signer_id for r in admitted})
            refused[Withdrawn.reason] += sum(r.id in gone for r in admitted)
            for record in admitted:
                if record.id not in gone:
                    rows.setdefault(record.id, QueryRow(record)).found_at.append(peer.node_id)
            refused = +refused
            if refused:
                result.refused += sum(refused.values())
                log_limited(
                    f"query refused from {peer.node_id}",
                    "records refused",
                    logging.WARNING,
                    peer=peer.node_id,
                    refused=dict(refused),
                )
    merged = list(rows.values())
    result.rows = (_sorted(merged, order) if order else merged)[:limit]
    return result


def _ask(
    connect: Connector, peer: Peer, filter_text: str, limit: int, order_by: str
) -> list[SignedEnvelope] | str:
    try:
        with connect(peer) as client:
            return client.query(filter_text, limit, order_by)
    except GridpointError as exc:
        return str(exc)
