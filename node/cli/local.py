"""Commands on this node's home alone: `init`, `identity`, `publish`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gridpoint.errors import ConfigError
from gridpoint.node.cli.output import print_json, print_line
from gridpoint.node.home import NodeHome, resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.node.store.base import CatalogStore

__all__ = ["register"]


def _open_store(args: argparse.Namespace, home: NodeHome) -> CatalogStore:
    from gridpoint.node.store.sql_store import open_store

    return open_store(home.db_url(args.db))


def cmd_init(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    identity = home.init(args.name)
    _open_store(args, home).close()
    info = {
        "node_id": identity.node_id,
        "fingerprint": home.tls_fingerprint,
        "home": str(home.path),
    }
    if args.json:
        print_json(info)
    else:
        print_line(f"initialized node {args.name!r} in {home.path}")
        print_line(f"node id:     {identity.node_id}")
        print_line(f"fingerprint: {home.tls_fingerprint}")
    return 0


def cmd_identity(args: argparse.Namespace) -> int:
    home = resolve_home(args.home)
    info = {
        "node_id": home.identity.node_id,
        "name": home.config.name,
        "public_key": home.identity.public_key.hex(),
        "fingerprint": home.tls_fingerprint,
    }
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print_line(f"{key + ':':<13}{value}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from gridpoint.node.publishing.service import PublishingService
    from gridpoint.schema import load_record_json

    home = resolve_home(args.home)
    path = Path(args.record)
    try:
        text = sys.stdin.read() if args.record == "-" else path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.record}: {exc.strerror}") from exc
    data = load_record_json(text, args.record)
    store = _open_store(args, home)
    try:
        result = PublishingService(home, store).publish_written(data)
    finally:
        store.close()
    if args.json:
        print_json({"id": result.record_id, "new": result.new, "signer": home.identity.node_id})
    else:
        print_line(
            f"{result.record_id}" if result.new else f"{result.record_id} (already in the catalog)"
        )
    return 0


def register(sub: SubParsers) -> None:
    """Adds `init`, `identity` and `publish`."""
    p = sub.add_parser(
        "init", help="create a node home: identity, TLS certificate, secret, config, store"
    )
    p.add_argument("--name", required=True, help="organization name shown to peers")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_init)
    p = sub.add_parser("identity", help="print this node's id and TLS fingerprint")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_identity)
    p = sub.add_parser(
        "publish",
        help="validate, sign and add a run record (JSON file, or - for stdin)",
        description="Validate, sign and add a run record written by hand. Its `study` and "
        "`trial` are your own names: they are published as keyed pseudonyms, as `tune` "
        "publishes them. accuracy and f1 must lie in [0, 1], losses be at least 0.",
    )
    p.add_argument("record", help="path to a RunRecord JSON file, or - for stdin")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_publish)
