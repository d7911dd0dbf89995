"""`gridpoint node start`: serve the catalog to trusted peers and pull from them periodically.

Runs in the foreground until SIGTERM or SIGINT; then stops accepting calls, lets in-flight
calls finish (grace period), stops the sync loop and closes the store. Prints the address
it listens on as its first line of stdout: "listening on HOST:PORT". One daemon per home
(state.py holds the home's lock) and per port (no SO_REUSEPORT).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from gridpoint.node.daemon.server import start_server
from gridpoint.node.daemon.state import HeldHome, hold_home
from gridpoint.node.home import NodeHome
from gridpoint.node.logs import configure_logging, log_event
from gridpoint.node.peers.grpc_transport import grpc_connector
from gridpoint.node.peers.sync import sync_all
from gridpoint.node.protocol.tls import split_address
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.node.store.writable import check_store_writable

__all__ = ["run_daemon"]

GRACE_S = 5.0


def run_daemon(home: NodeHome, db_url: str, listen: str | None) -> int:
    """Runs the node until a termination signal; returns the exit code."""
    configure_logging()
    address = listen or home.config.listen
    host, _ = split_address(address, allow_port_zero=True)
    with hold_home(home.path) as held:
        check_store_writable(db_url)
        store = open_store(db_url)
        return _serve(home, store, host, address, held)


def _serve(home: NodeHome, store: SqlStore, host: str, address: str, held: HeldHome) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event("shutdown requested", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = start_server(home, store, address)
        bound = f"{host}:{server.port}" if ":" not in host else f"[{host}]:{server.port}"
        held.announce(bound)
        print(f"listening on {bound}", flush=True)
        log_event(
            "node started",
            node_id=home.identity.node_id,
            listen=bound,
            db=store.dialect,  # never the URL: it names the home (and maybe a password)
            peers=len(store.list_peers()),
            records=store.count_records(),
        )
        syncer = threading.Thread(target=_sync_loop, args=(home, store, stop), daemon=True)
        syncer.start()
        stop.wait()
        server.stop(GRACE_S)
        syncer.join(timeout=GRACE_S)
        log_event("node stopped", node_id=home.identity.node_id)
    finally:
        store.close()
    return 0


def _sync_loop(home: NodeHome, store: CatalogStore, stop: threading.Event) -> None:
    interval = home.config.sync.interval_s
    if interval <= 0:
        return
    connect = grpc_connector(home)
    while not stop.wait(interval):
        try:
            sync_all(home, store, connect)
        except Exception as exc:  # the store itself failing (e.g. list_peers): retry next round
            log_event("sync round failed", logging.ERROR, error=exc.__class__.__name__)
