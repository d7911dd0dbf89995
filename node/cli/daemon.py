"""`node start`, `node stop` and `node status`: run this home's daemon, stop it, and say how
it is doing."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from gridpoint.node.cli.output import print_json, print_line, print_table, timestamp
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers

__all__ = ["register"]


def cmd_node_start(args: argparse.Namespace) -> int:
    from gridpoint.node.daemon.run import run_daemon

    home = resolve_home(args.home)
    home.check()  # fail early, before binding, on a missing or broken home
    return run_daemon(home, home.db_url(args.db), args.listen)


def cmd_node_stop(args: argparse.Namespace) -> int:
    from gridpoint.errors import ConfigError
    from gridpoint.node.daemon.stop import stop_daemon

    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    home = resolve_home(args.home)
    home.check()
    stopped = stop_daemon(home.path, args.timeout)
    if args.json:
        print_json(
            {
                "was_running": stopped.pid is not None,
                "pid": stopped.pid,
                "seconds": round(stopped.seconds, 3),
                "killed": stopped.killed,
            }
        )
    elif stopped.pid is None:
        print_line(f"no daemon runs on {home.path}")
    elif stopped.killed:
        print_line(
            f"the daemon (PID {stopped.pid}) did not stop within {args.timeout:g} s of "
            f"SIGTERM: killed it (SIGKILL) after {stopped.seconds:.1f} s"
        )
    else:
        print_line(f"stopped the daemon (PID {stopped.pid}) in {stopped.seconds:.1f} s")
    return 0


def cmd_node_status(args: argparse.Namespace) -> int:
    from gridpoint.node.home_lock import running_daemon
    from gridpoint.node.store.sql_store import open_store

    home = resolve_home(args.home)
    home.check()
    daemon = running_daemon(home.path)
    store = open_store(home.db_url(args.db))
    try:
        peers = store.list_peers()
        records = store.count_records()
    finally:
        store.close()
    status: dict[str, Any] = {
        "node_id": home.identity.node_id,
        "name": home.config.name,
        "running": daemon is not None,
        "pid": daemon.pid if daemon else None,
        "address": daemon.address if daemon else None,
        "started_at": daemon.started_at if daemon else None,
        "records": records,
        "peers": [
            {
                "node_id": p.node_id,
                "name": p.name,
                "address": p.address,
                "last_sync_at": timestamp(p.last_sync_at),
            }
            for p in peers
        ],
    }
    if args.json:
        print_json(status)
        return 0
    if daemon is None:
        print_line(
            f"daemon:  not running (start it with `gridpoint --home {home.path} node start`)"
        )
    else:
        print_line(
            f"daemon:  running, PID {daemon.pid}, listening on {daemon.address or '(starting)'} "
            f"since {daemon.started_at} (stop it with `gridpoint node stop`)"
        )
    print_line(f"node:    {home.config.name!r} ({home.identity.node_id})")
    print_line(f"records: {records} in the catalog")
    if not peers:
        print_line("peers:   none trusted yet (`gridpoint peer add ADDRESS --fingerprint FP`)")
        return 0
    print_table(
        f"{len(peers)} trusted peer(s)",
        ["name", "node id", "address", "last sync"],
        [
            [p["name"], p["node_id"][:12], p["address"], p["last_sync_at"] or "never"]
            for p in status["peers"]
        ],
    )
    return 0


def register(sub: SubParsers) -> None:
    """Adds `node start`, `node stop` and `node status`."""
    node = sub.add_parser(
        "node", help="run the node daemon, or see how it is doing"
    ).add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    p = node.add_parser("start", help="serve the catalog to trusted peers and sync from them")
    p.add_argument("--listen", help="HOST:PORT to listen on (port 0 picks a free port)")
    p.set_defaults(handler=cmd_node_start)
    p = node.add_parser(
        "stop", help="stop this home's daemon: SIGTERM, then SIGKILL if it has not stopped in time"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait after SIGTERM before SIGKILL (default 15)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_node_stop)
    p = node.add_parser(
        "status", help="is the daemon running, where, its peers and when each last synced"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_node_status)
