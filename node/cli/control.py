"""The owner's-control commands: `catalog withdraw`, `catalog query --withdrawn`,
`identity rotate|revoke`, `policy check|explain`, `audit`.

`withdraw` and `--withdrawn` join the `catalog` group, `rotate` and `revoke` the `identity`
command (whose plain form still prints the identity): registered after those groups, this
module adds to their parsers rather than editing their modules. Each command parses, calls
one service of gridpoint.node.control and prints.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gridpoint.errors import RequestError
from gridpoint.node.cli.output import print_json, print_line, print_table, stderr
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import Handler, SubParsers
    from gridpoint.node.home import NodeHome
    from gridpoint.node.store.base import CatalogStore
    from gridpoint.node.store.control_base import LedgerEntry

__all__ = ["register"]

T = TypeVar("T")
_RELATIVE = re.compile(r"([0-9]{1,5})([dh])")


def _run(
    args: argparse.Namespace, service: Callable[[NodeHome, CatalogStore], T]
) -> tuple[NodeHome, T]:
    """Calls one service on the node's home and open store (closed after)."""
    from gridpoint.node.store.sql_store import open_store

    home = resolve_home(args.home)
    home.check()
    store = open_store(home.db_url(args.db))
    try:
        return home, service(home, store)
    finally:
        store.close()


def cmd_withdraw(args: argparse.Namespace) -> int:
    from gridpoint.node.control.withdraw import withdraw

    home, done = _run(
        args,
        lambda home, store: withdraw(
            home, store, args.ids, study=args.study, filter_text=args.filter, reason=args.reason
        ),
    )
    if args.json:
        print_json(
            {
                "withdrawn": list(done.record_ids),
                "variants": list(done.variant_ids),
                "tombstones": list(done.tombstone_ids),
            }
        )
        return 0
    for record_id in done.record_ids:
        print_line(f"withdrawn {record_id}")
    if done.variant_ids:
        print_line(f"and {len(done.variant_ids)} shared variant(s) of them")
    print_line("peers delete their copies when they next sync (and relay the tombstone on)")
    return 0


def cmd_withdrawn(args: argparse.Namespace) -> int:
    home, rows = _run(args, lambda home, store: store.withdrawals(limit=args.limit))
    if args.json or args.format == "json":
        print_json(
            [
                {
                    "id": w.record_id,
                    "signer": w.signer_id,
                    "tombstone": w.statement_id,
                    "reason": w.reason,
                    "withdrawn_at": w.withdrawn_at.isoformat(),
                    "held": w.held,
                }
                for w in rows
            ]
        )
        return 0
    print_table(
        f"{len(rows)} withdrawn record(s)",
        ["id", "withdrawn by", "at", "reason"],
        [
            [
                w.record_id[:12],
                "this node" if w.signer_id == home.identity.node_id else w.signer_id[:12],
                f"{w.withdrawn_at:%Y-%m-%d %H:%M}",
                w.reason,
            ]
            for w in rows
        ],
    )
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from gridpoint.node.control.keys import rotate

    home, done = _run(args, rotate)
    if args.json:
        print_json(
            {
                "old_node_id": done.old_id,
                "node_id": done.new_id,
                "fingerprint": done.fingerprint,
                "revocation_certificate": done.certificate.name,
            }
        )
        return 0
    print_line(f"rotated {done.old_id} -> {done.new_id}")
    print_line(f"fingerprint: {done.fingerprint}")
    print_line(f"peers follow on their next sync; move {done.certificate.name} offline")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from gridpoint.node.control.keys import revoke_live, revoke_with_certificate

    home, done = _run(
        args,
        lambda home, store: (
            revoke_with_certificate(home, store, Path(args.certificate))
            if args.certificate
            else revoke_live(home, store, args.reason)
        ),
    )
    if args.json:
        print_json(
            {
                "revoked": done.revoked_id,
                "current": done.current,
                "node_id": done.rotated.new_id if done.rotated else home.identity.node_id,
            }
        )
        return 0
    if done.rotated is not None:
        print_line(f"rotated to {done.rotated.new_id} (fingerprint {done.rotated.fingerprint})")
    print_line(f"revoked key {done.revoked_id}: peers refuse what it signs from their next sync")
    if done.current:
        stderr.print(
            "warning: that is this node's current key: peers now refuse everything it signs; "
            "make a new home (`gridpoint init`) and have peers `peer add` it",
            markup=False,
        )
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from gridpoint.node.control.explain import check

    home, checked = _run(args, check)
    policy = checked.policy
    if args.json:
        print_json(
            {
                "rules": [r.name for r in policy.rules],
                "groups": {g: sorted(m) for g, m in policy.groups.items()},
                "default": policy.default,
                "untrusted_members": checked.untrusted,
            }
        )
        return 0
    for group, members in checked.untrusted.items():
        stderr.print(
            f"warning: group {group!r} names node(s) this node does not trust: "
            f"{', '.join(members)}",
            markup=False,
        )
    print_line(
        f"policy ok: {len(policy.rules)} rule(s), {len(policy.groups)} group(s), "
        f"records no rule matches go to {'every trusted peer' if policy.default == 'all' else 'nobody'}"
    )
    return 0


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from gridpoint.node.control.explain import explain

    home, told = _run(args, lambda home, store: explain(home, store, args.peer))
    if args.json:
        print_json(
            {
                "peer": told.peer.node_id,
                "name": told.peer.name,
                "groups": told.groups,
                "statements": told.statements,
                "rules": [
                    {
                        "name": r.name,
                        "line": r.line,
                        "matches": r.matches,
                        "groups": list(r.groups),
                        "parts": list(r.parts),
                        "for_this_peer": r.admits,
                        "records": dict(r.outcomes),
                    }
                    for r in told.rules
                ],
            }
        )
        return 0
    print_line(f"peer {told.peer.name!r} ({told.peer.node_id})")
    print_line(f"in groups: {', '.join(told.groups) or 'none (only what goes to all)'}")
    for r in told.rules:
        where = f" (line {r.line})" if r.line else ""
        to = ", ".join(r.groups) or "nobody"
        verdict = "for this peer" if r.admits else "NOT for this peer"
        print_line(f"rule {r.name!r}{where}: {r.matches} -> {to}; parts: {', '.join(r.parts)}")
        print_line(f"  {verdict}")
        for outcome, count in sorted(r.outcomes.items()):
            print_line(f"  {count} record(s) {outcome}")
    print_line(f"statements (tombstones, key rotations, revocations): all {told.statements} sent")
    return 0


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return datetime.now(UTC) - timedelta(days=amount if unit == "d" else amount / 24)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RequestError(
            f"--since {text[:40]!r}: give a date (2026-12-01), a time (2026-12-01T10:00) "
            "or a span (7d, 12h)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    from gridpoint.node.control.explain import find_peer

    since = _since(args.since)

    def read(_home: NodeHome, store: CatalogStore) -> tuple[list[LedgerEntry], dict[str, str]]:
        peer = find_peer(store, args.peer).node_id if args.peer else None
        entries = store.ledger(peer_id=peer, since=since, limit=args.limit)
        return entries, {p.node_id: p.name for p in store.list_peers()}

    _, (entries, names) = _run(args, read)
    if args.json:
        print_json(
            [
                {
                    "at": e.at.isoformat(),
                    "peer": e.peer_id,
                    "kind": e.kind,
                    "item": e.item_id or None,
                    "record": e.subject_id or None,
                    "rule": e.rule,
                    "count": e.count,
                }
                for e in entries
            ]
        )
        return 0
    print_table(
        f"{len(entries)} ledger entr{'y' if len(entries) == 1 else 'ies'}",
        ["at", "peer", "kind", "item", "rule", "count"],
        [
            [
                f"{e.at:%Y-%m-%d %H:%M:%S}" if e.item_id else f"{e.at:%Y-%m-%d} (day)",
                names.get(e.peer_id, e.peer_id[:12]),
                e.kind,
                e.item_id[:12],
                e.rule,
                e.count,
            ]
            for e in entries
        ],
        numeric=[5],
    )
    return 0


def _subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest=f"{parser.prog.split()[-1]}_command", metavar="COMMAND")


def _query_or_withdrawn(query: Handler) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        return cmd_withdrawn(args) if args.withdrawn else query(args)

    return handler


def register(sub: SubParsers) -> None:
    """Adds the owner's-control commands (after `catalog` and `identity` are registered)."""
    catalog = _subcommands(sub.choices["catalog"])
    p = catalog.add_parser(
        "withdraw", help="take back records this node published (peers delete their copies)"
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="record ids (or unique prefixes)")
    p.add_argument("--study", help="every record of this node's study NAME")
    p.add_argument("--filter", help="every record of this node matching a catalog filter")
    p.add_argument("--reason", default="", help="why (sent to peers with the tombstone)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_withdraw)
    query = catalog.choices["query"]
    query.add_argument(
        "--withdrawn",
        action="store_true",
        help="list the records withdrawn here or by peers' tombstones instead",
    )
    query.set_defaults(handler=_query_or_withdrawn(query.get_default("handler")))

    identity = _subcommands(sub.choices["identity"])
    p = identity.add_parser(
        "rotate", help="move this node to a new identity key; peers follow without `peer add`"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_rotate)
    p = identity.add_parser(
        "revoke",
        help="revoke a key: with --certificate the key it names, else rotate and revoke the old",
    )
    p.add_argument("--certificate", help="a revocation certificate (from `init` or `rotate`)")
    p.add_argument("--reason", default="", help="why (sent to peers)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_revoke)

    policy = sub.add_parser("policy", help="the sharing policy of config.toml").add_subparsers(
        dest="policy_command", required=True, metavar="COMMAND"
    )
    p = policy.add_parser("check", help="validate the policy; name the line of any mistake")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_policy_check)
    p = policy.add_parser("explain", help="what a peer receives under the policy, and why")
    p.add_argument("peer", metavar="PEER", help="a trusted peer's node id, prefix or name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_policy_explain)

    p = sub.add_parser("audit", help="the outbound ledger: what left this node, to whom, when")
    p.add_argument("--peer", help="only what went to this peer (node id, prefix or name)")
    p.add_argument("--since", help="from a date, a time, or a span back (7d, 12h)")
    p.add_argument("--limit", type=int, default=1000, help="most entries (default 1000)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_audit)
