"""The `gridpoint` command line: parses arguments, calls the node, prints results.

Every GridpointError becomes one line on stderr and exit code 1 (2 for usage errors);
no traceback reaches the user. Heavy work (tuning, federation) is imported lazily inside
its command so that catalog commands and the daemon never load torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from node.errors import ConfigError, GridpointError, RecordError
from node.home import NodeHome, resolve_home
from node.output import print_json, print_line, stderr

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _open_store(args: argparse.Namespace, home: NodeHome):  # type: ignore[no-untyped-def]
    from node.sql_store import open_store

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
    from node.catalog import publish
    from node.run_record import record_from_json

    home = resolve_home(args.home)
    path = Path(args.record)
    try:
        text = sys.stdin.read() if args.record == "-" else path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.record}: {exc.strerror}") from exc
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"{args.record} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from exc
    record = record_from_json(data)
    store = _open_store(args, home)
    try:
        result = publish(store, home.identity, record)
    finally:
        store.close()
    if args.json:
        print_json({"id": result.id, "new": result.new, "signer": home.identity.node_id})
    else:
        print_line(result.id if result.new else f"{result.id} (already in the catalog)")
    return 0


def cmd_fed(args: argparse.Namespace) -> int:
    # node never imports federation: the command runs as its own entry point.
    argv = [sys.executable, "-m", "federation"]
    if args.home:
        argv += ["--home", args.home]
    if args.db:
        argv += ["--db", args.db]
    os.execv(sys.executable, [*argv, *args.fed_args])


def _refuse_constant(name: str) -> float:
    raise RecordError(f"{name} is not allowed in a record (values must be finite numbers)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridpoint",
        description="Federated experiment sharing: run a node, share tuning runs, train together.",
    )
    parser.add_argument("--home", help="node home directory (default: $GRIDPOINT_HOME)")
    parser.add_argument(
        "--db", help="database URL overriding the config (sqlite:///... or postgresql://...)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Handler, help_text: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(handler=handler)
        return p

    p = add(
        "init", cmd_init, "create a node home: identity, TLS certificate, secret, config, store"
    )
    p.add_argument("--name", required=True, help="organization name shown to peers")
    add("identity", cmd_identity, "print this node's id and TLS fingerprint")
    p = add(
        "publish", cmd_publish, "validate, sign and add a run record (JSON file, or - for stdin)"
    )
    p.add_argument("record", help="path to a RunRecord JSON file, or - for stdin")

    from node.cli_network import register as register_network
    from node.cli_tune import register as register_tune

    register_network(sub, add)
    register_tune(sub)
    p = sub.add_parser(
        "fed",
        help="federated training: `fed host ...` or `fed join ADDRESS ...` (see `fed --help`)",
        add_help=False,
    )
    p.add_argument("fed_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=cmd_fed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs every refused TLS handshake at info level; refusals are ours to log.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except GridpointError as exc:
        stderr.print(f"error: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
