"""Commands that talk to peers and read the catalog: `peer add|list|remove`,
`catalog sync|query|show`."""

from __future__ import annotations

import argparse
import difflib
import json
from typing import TYPE_CHECKING, Any

from gridpoint.errors import PeerError, RequestError
from gridpoint.node.cli.output import (
    print_delimited,
    print_json,
    print_line,
    print_table,
    stderr,
    timestamp,
)
from gridpoint.node.home import resolve_home
from gridpoint.schema import record_to_json

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.node.home import NodeHome
    from gridpoint.node.store.base import CatalogStore
    from gridpoint.node.store.query_filter import FilterNode, OrderBy

__all__ = ["register"]


def _store(args: argparse.Namespace) -> tuple[NodeHome, CatalogStore]:
    from gridpoint.node.store.sql_store import open_store

    home = resolve_home(args.home)
    return home, open_store(home.db_url(args.db))


def cmd_peer_add(args: argparse.Namespace) -> int:
    from gridpoint.node.peers.trust import add_peer

    home, store = _store(args)
    try:
        result = add_peer(home, store, args.address, args.fingerprint, replace=args.replace)
    finally:
        store.close()
    peer, old = result.peer, result.replaced
    if args.json:
        print_json(
            {
                "node_id": peer.node_id,
                "name": peer.name,
                "address": peer.address,
                "fingerprint": peer.fingerprint,
                "mutual": result.mutual,
                "replaced": None
                if old is None
                else {"name": old.name, "address": old.address, "fingerprint": old.fingerprint},
            }
        )
        return 0
    if old is not None:
        print_line(f"replaced the trusted entry of {peer.node_id}:")
        for what, before, after in (
            ("name", old.name, peer.name),
            ("address", old.address, peer.address),
            ("fingerprint", old.fingerprint, peer.fingerprint),
        ):
            if before != after:
                print_line(f"  {what}: {before} -> {after}")
    print_line(f"trusted {peer.name!r} ({peer.node_id}) at {peer.address}")
    if not result.mutual:
        stderr.print(
            "note: the peer does not accept this node yet; on the peer run:\n"
            f"  gridpoint peer add <this node's address> --fingerprint {home.tls_fingerprint}",
            markup=False,
        )
    return 0


def cmd_peer_list(args: argparse.Namespace) -> int:
    home, store = _store(args)
    try:
        peers = store.list_peers()
    finally:
        store.close()
    rows = [
        {
            "node_id": p.node_id,
            "name": p.name,
            "address": p.address,
            "fingerprint": p.fingerprint,
            "added_at": timestamp(p.added_at),
            "last_sync_at": timestamp(p.last_sync_at),
        }
        for p in peers
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(
            "trusted peers",
            ["node id", "name", "address", "last sync"],
            [[r["node_id"], r["name"], r["address"], r["last_sync_at"] or "never"] for r in rows],
            whole=(0, 2, 3),
        )
    return 0


def cmd_peer_remove(args: argparse.Namespace) -> int:
    from gridpoint.node.peers.trust import find_peer
    from gridpoint.node.store.query_filter import parse_filter

    home, store = _store(args)
    try:
        peer = find_peer(store, args.node_id)
        signed = store.count_records(parse_filter(f"signer = '{peer.node_id}'"))
        if not store.remove_peer(peer.node_id):
            raise PeerError(f"no trusted peer {args.node_id!r}; see `gridpoint peer list`")
    finally:
        store.close()
    if args.json:
        print_json({"node_id": peer.node_id, "name": peer.name, "records_kept": signed})
        return 0
    print_line(f"removed {peer.name!r} ({peer.node_id}): no more syncs with it, nor calls from it")
    print_line(
        f"kept: the {signed} record(s) it signed, still in the catalog and still verifiable "
        "(records travel signed; withdrawing them is their author's to do)"
    )
    return 0


def cmd_catalog_sync(args: argparse.Namespace) -> int:
    import logging

    from gridpoint.node.peers.grpc_transport import grpc_connector
    from gridpoint.node.peers.sync import sync_all
    from gridpoint.node.peers.trust import find_peer
    from gridpoint.node.protocol.peer_text import printable

    # Everything the daemon would log is in the report printed below, per peer, in words:
    # no log lines (JSON, for the daemon's log) on this terminal.
    quiet = logging.getLogger("gridpoint")
    quiet.handlers[:] = [logging.NullHandler()]
    quiet.propagate = False
    home, store = _store(args)
    try:
        only = find_peer(store, args.peer).node_id if args.peer else None
        reports = sync_all(home, store, grpc_connector(home), only)
    finally:
        store.close()
    if args.json:
        print_json([r.as_json() for r in reports])
    elif not reports:
        print_line("no trusted peers to sync from (`gridpoint peer add ADDRESS --fingerprint FP`)")
    else:
        print_table(
            "sync",
            ["peer", "new", "duplicates", "refused", "error"],
            [
                [
                    r.peer_id[:12],
                    r.new,
                    r.duplicates,
                    _refused(r.refused),
                    printable(
                        r.error or (f"stopped ({r.stopped}): more next round" if r.stopped else "")
                    ),
                ]
                for r in reports
            ],
            numeric=(1, 2),
            whole=(0, 1, 2),
        )
    # One rule: 1 when any peer could not be synced (its error is in the report), else 0.
    return 1 if any(r.error for r in reports) else 0


def _refused(counts: Any) -> str:
    """Refused records by reason, e.g. "3 (unknown-signer 2, bad-signature 1)"."""
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"


def cmd_catalog_query(args: argparse.Namespace) -> int:
    from gridpoint.node.peers.grpc_transport import grpc_connector
    from gridpoint.node.peers.live_query import run_query
    from gridpoint.node.pseudonyms import own_study_names
    from gridpoint.node.record_views import SignerNames, format_value
    from gridpoint.node.store.keys import key_value
    from gridpoint.node.store.query_filter import filter_text, parse_filter, parse_order_by

    if args.limit < 1:
        raise RequestError(f"--limit must be at least 1, got {args.limit}")
    home, store = _store(args)
    try:
        where = own_study_names(parse_filter(args.filter), home.secret)
        order = parse_order_by(args.order_by)
        _warn_unknown_names(store, where, order)
        names = SignerNames(home, store)
        result = run_query(
            home,
            store,
            filter_text(where) if where is not None else "",
            limit=args.limit,
            order_by=args.order_by,
            connect=grpc_connector(home) if args.peers else None,
        )
    finally:
        store.close()
    for peer_id, reason in result.unanswered.items():
        stderr.print(f"warning: peer {peer_id} did not answer: {reason}", markup=False)
    if result.refused:
        stderr.print(
            f"warning: {result.refused} record(s) from peers were refused (see the log)",
            markup=False,
        )
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print_json(
            [
                {
                    **_row_json(row.record, row.found_at),
                    "signer_name": names.name(row.record.signer_id),
                }
                for row in result.rows
            ]
        )
        return 0
    columns = _columns(args.columns, where, order, [row.record for row in result.rows])
    headings = ["id", "signed by", *columns]
    if args.peers:
        headings.append("found at")
    table = [
        [
            row.record.id if fmt != "table" else row.record.id[:12],
            names.name(row.record.signer_id),
            *(key_value(row.record, key) for key in columns),
            *([", ".join(names.name(x) for x in row.found_at)] if args.peers else []),
        ]
        for row in result.rows
    ]
    if fmt == "table":
        print_table(
            f"{len(result.rows)} record(s)",
            headings,
            [[format_value(v) for v in r] for r in table],
            numeric=[i for i, h in enumerate(headings) if h in columns and _numeric(h)],
            whole=[0],
        )
    else:
        print_delimited(headings, table, "," if fmt == "csv" else "\t")
    return 0


def _numeric(key: str) -> bool:
    """Whether a column holds numbers (right-aligned, never split)."""
    from gridpoint.node.store.keys import key_spec

    return key_spec(key).type in ("num", "any")


#: Columns of `catalog query` when --columns is not given (metrics the filter names follow).
DEFAULT_COLUMNS = ("kind", "task.type", "model.base")


def _columns(
    chosen: str, where: FilterNode | None, order: OrderBy | None, records: list[Any]
) -> list[str]:
    """--columns (checked), else the defaults, the metrics the filter or order names and,
    when they name none, each shown record's objective metric."""
    from gridpoint.node.record_views import check_columns
    from gridpoint.node.store.query_filter import filter_names

    if chosen:
        return check_columns([c.strip() for c in chosen.split(",") if c.strip()])
    metrics = sorted(filter_names(where, "metrics."))
    if order is not None and order.key.startswith("metrics.") and order.key[8:] not in metrics:
        metrics.insert(0, order.key[8:])
    if not metrics:
        metrics = sorted({r.record.objective_metric for r in records if r.record.objective_metric})
    return [*DEFAULT_COLUMNS, *(f"metrics.{m}" for m in metrics)]


def cmd_catalog_show(args: argparse.Namespace) -> int:
    from gridpoint.node.record_views import format_value, introduction_text, record_view

    home, store = _store(args)
    try:
        view = record_view(home, store, args.record_id)
    finally:
        store.close()
    stored = view.stored
    if args.json:
        print_json(
            {
                **_row_json(stored, []),
                "signer_name": view.signer_name,
                "author_standing": view.standing,
                "vouched_by": (
                    {
                        "voucher": view.introduction.voucher_id,
                        "name": view.voucher_name,
                        "depth": view.introduction.depth,
                        "vouch": view.introduction.statement_id,
                    }
                    if view.introduction is not None
                    else None
                ),
                "parents": [pid for pid, _ in view.parents],
                "found_at": [
                    {"name": name, "first_seen_at": timestamp(seen)} for name, seen in view.sources
                ],
                **(
                    {"private": [p.__dict__ for p in view.private]}
                    if view.own and view.private
                    else {}
                ),
            }
        )
        return 0
    lines = [
        ("id", stored.id),
        (
            "signed by",
            f"{view.signer_name}{' (this node)' if view.own else ''} ({stored.signer_id})",
        ),
    ]
    if standing := introduction_text(view):
        lines.append(("author", standing))
    lines += [
        ("found at", f"{name} (first synced {timestamp(seen)})") for name, seen in view.sources
    ]
    for key, value in view.fields.items():
        if isinstance(value, dict):
            lines += [(f"{key}.{k}", format_value(v)) for k, v in sorted(value.items())]
        elif isinstance(value, list):
            lines.append(
                (key, ", ".join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value))
            )
        else:
            lines.append((key, format_value(value)))
    lines += [
        ("parent", f"{pid} ({signer or 'not in this catalog'})") for pid, signer in view.parents
    ]
    for p in view.private:
        lines.append(("private: study / trial", f"{p.study_name} / {p.trial_number} ({p.state})"))
        if p.error:
            lines.append(("private: error", p.error))
    print_table(f"record {stored.id[:12]}", ["field", "value"], lines)
    by_metric: dict[str, list[str]] = {}
    for point in stored.record.curve:
        by_metric.setdefault(point.metric, []).append(f"{point.step}:{format_value(point.value)}")
    for metric, points in by_metric.items():
        print_line(f"curve {metric} ({len(points)} points): {' '.join(points)}")
    return 0


def _warn_unknown_names(
    store: CatalogStore, where: FilterNode | None, order: OrderBy | None
) -> None:
    """A warning for each metric or parameter no stored record has, naming close ones."""
    from gridpoint.node.store.query_filter import filter_names

    for family in ("metrics", "params"):
        prefix = f"{family}."
        used = filter_names(where, prefix)
        if order is not None and order.key.startswith(prefix):
            used.add(order.key.removeprefix(prefix))
        known = store.known_names(family) if used else set()
        for name in sorted(used - known):
            starts = [k for k in sorted(known) if k.startswith(name)]
            close = starts[:3] or difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            stderr.print(f"warning: no record has {prefix}{name}{hint}", markup=False)


def _row_json(stored: Any, found_at: list[str]) -> dict[str, Any]:
    return {
        "id": stored.id,
        "signer": stored.signer_id,
        "found_at": found_at,
        **record_to_json(stored.record),
    }


def register(sub: SubParsers) -> None:
    """Adds this module's commands to the top-level parser."""
    peer = sub.add_parser("peer", help="manage trusted peers").add_subparsers(
        dest="peer_command", required=True, metavar="COMMAND"
    )
    p = peer.add_parser("add", help="check a peer's fingerprint and trust it")
    p.add_argument("address", help="the peer's HOST:PORT")
    p.add_argument(
        "--fingerprint",
        required=True,
        help="the peer's TLS fingerprint (from its `gridpoint identity`)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the entry of a node id already trusted with another certificate",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_peer_add)
    p = peer.add_parser("list", help="list trusted peers")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_peer_list)
    p = peer.add_parser(
        "remove", help="stop trusting a peer (the records it signed stay in the catalog)"
    )
    p.add_argument("node_id", metavar="NODE_ID", help="the peer's node id or a unique prefix")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_peer_remove)

    catalog = sub.add_parser(
        "catalog", help="sync and query the experiment catalog"
    ).add_subparsers(dest="catalog_command", required=True, metavar="COMMAND")
    p = catalog.add_parser(
        "sync",
        help="pull new records from trusted peers now",
        description="Pull new records from every trusted peer (or one), side by side, and "
        "report each: new, duplicate and refused records, and why a peer could not be synced. "
        "Exit status: 1 when any peer could not be synced, else 0 (records a peer sent that "
        "were refused do not make it fail).",
    )
    p.add_argument("--peer", help="only this peer (node id or a unique prefix)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_catalog_sync)
    from gridpoint.node.store.filter_reference import filter_reference

    p = catalog.add_parser(
        "query",
        help='filter the catalog, e.g. "metrics.accuracy > 0.8"',
        description="Records of the catalog that match FILTER, with who signed each.",
        epilog=filter_reference(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("filter", nargs="?", default="", help="filter expression ('' matches all)")
    p.add_argument("--peers", action="store_true", help="also ask trusted peers live")
    p.add_argument("--limit", type=int, default=100, help="most records shown (default 100)")
    p.add_argument("--order-by", default="", help="KEY [asc|desc], e.g. 'metrics.accuracy desc'")
    p.add_argument(
        "--columns",
        default="",
        help="comma-separated keys shown after id and signer, e.g. "
        "'task.type,params.learning_rate,metrics.accuracy' (default: kind, task, model and "
        "the metrics the filter names)",
    )
    p.add_argument(
        "--format",
        choices=("table", "csv", "tsv", "json"),
        default="table",
        help="table (numbers rounded), csv or tsv (full ids and values), json (every field)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (same as --format json)")
    p.set_defaults(handler=cmd_catalog_query)
    p = catalog.add_parser("show", help="print one record in full (id or unique prefix)")
    p.add_argument("record_id", metavar="ID", help="a record id or a unique prefix of one")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_catalog_show)
