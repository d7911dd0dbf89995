"""Introductions on the command line: `trust vouch|unvouch|list`.

Each command parses, calls one service of gridpoint.node.control.vouching and prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from gridpoint.node.cli.output import print_json, print_line, print_table
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.node.control.vouching import Listing, Vouched
    from gridpoint.node.home import NodeHome
    from gridpoint.node.store.base import CatalogStore

__all__ = ["register"]

T = TypeVar("T")


def _signed(args: argparse.Namespace, done: Vouched, what: str) -> int:
    if args.json:
        print_json({"author": done.author_id, "depth": done.depth, "statement": done.statement_id})
        return 0
    print_line(what)
    print_line("peers hear of it when they next sync (and relay it on)")
    return 0


def _run(args: argparse.Namespace, service: Callable[[NodeHome, CatalogStore], T]) -> T:
    """Calls one service on the node's home and open store (closed after)."""
    from gridpoint.node.store.sql_store import open_store

    home = resolve_home(args.home)
    home.check()
    store = open_store(home.db_url(args.db))
    try:
        return service(home, store)
    finally:
        store.close()


def cmd_vouch(args: argparse.Namespace) -> int:
    from gridpoint.node.control.vouching import vouch

    done = _run(args, lambda home, store: vouch(home, store, args.author, args.depth, args.note))
    return _signed(args, done, f"vouched for {done.author_id} (depth {done.depth})")


def cmd_unvouch(args: argparse.Namespace) -> int:
    from gridpoint.node.control.vouching import unvouch

    done = _run(args, lambda home, store: unvouch(home, store, args.author, args.reason))
    return _signed(
        args,
        done,
        f"withdrew the vouch for {done.author_id}: peers refuse its new records "
        "(what they took in is kept)",
    )


def _print_listing(listing: Listing) -> None:
    print_table(
        "this node vouches for",
        ["author", "depth", "signed", "note"],
        [[e.author_id, e.depth, e.statement_id[:12], e.note] for e in listing.own],
        whole=(0,),
    )
    if listing.max_depth == 0:
        print_line("introductions are off here ([introductions] max_depth = 0 in config.toml)")
        return
    print_table(
        f"authors taken in through vouches (max_depth {listing.max_depth})",
        ["author", "vouched by", "depth"],
        [[i.author_id, i.voucher_id, i.depth] for i in listing.introduced],
        whole=(0, 1),
    )


def cmd_list(args: argparse.Namespace) -> int:
    from gridpoint.node.control.vouching import listing

    found = _run(args, listing)
    if args.json:
        print_json(
            {
                "max_depth": found.max_depth,
                "vouches": [
                    {
                        "author": e.author_id,
                        "depth": e.depth,
                        "statement": e.statement_id,
                        "note": e.note,
                    }
                    for e in found.own
                ],
                "introduced": [
                    {
                        "author": i.author_id,
                        "voucher": i.voucher_id,
                        "depth": i.depth,
                        "vouch": i.statement_id,
                    }
                    for i in found.introduced
                ],
            }
        )
        return 0
    _print_listing(found)
    return 0


def register(sub: SubParsers) -> None:
    """Adds `trust vouch|unvouch|list`."""
    trust = sub.add_parser(
        "trust", help="introductions: vouch for authors your peers may take records from"
    ).add_subparsers(dest="trust_command", required=True, metavar="COMMAND")
    p = trust.add_parser(
        "vouch", help="vouch for an author: peers that follow introductions take its records"
    )
    p.add_argument(
        "author", metavar="KEY|PEER", help="a node id, or a trusted peer's name or id prefix"
    )
    p.add_argument(
        "--depth",
        type=int,
        default=1,
        help="how far the introduction reaches: 1 = this author only, 2 = and whom it vouches "
        "for, ... (default 1, at most 8)",
    )
    p.add_argument("--note", default="", help="why (sent to peers with the vouch)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_vouch)
    p = trust.add_parser("unvouch", help="withdraw this node's vouch for an author")
    p.add_argument(
        "author",
        metavar="KEY|PEER",
        help="a node id (or prefix of one vouched for), or a trusted peer",
    )
    p.add_argument("--reason", default="", help="why (sent to peers)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_unvouch)
    p = trust.add_parser("list", help="what this node vouches for, and whom it follows")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_list)
