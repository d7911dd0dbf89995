"""`gridpoint node start`: serve the catalog to trusted peers and pull from them periodically.

Runs in the foreground until SIGTERM or SIGINT; then stops accepting calls, lets in-flight
calls finish (grace period), stops the sync loop, closes the store and exits, all within
about 2 x GRACE_S. Prints the address it listens on as its first line of stdout: "listening
on HOST:PORT". One daemon per home (node/home_lock.py holds the home's lock) and per port (no
SO_REUSEPORT).

Signals are never handled in a Python signal handler: a handler runs between any two
bytecodes of the main thread, and one that takes a lock the main thread already holds (an
Event's, the log's) deadlocks it for good, the home's lock still held, so `node status`
says "running" forever. SIGTERM and SIGINT are blocked in every thread from the start and
the main thread waits for them with sigwait(); a second signal during shutdown stays
pending and changes nothing.

Must never: leave the process alive after it released the home's lock.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from gridpoint.node.daemon.answer_processes import AnswerProcesses
from gridpoint.node.daemon.server import start_server
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.daemon.sync_loop import SyncLoop, schedule_for
from gridpoint.node.home import NodeHome
from gridpoint.node.home_lock import HeldHome, hold_home
from gridpoint.node.logs import configure_logging, log_event
from gridpoint.node.peers.grpc_transport import grpc_connector
from gridpoint.node.protocol.tls import split_address
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.node.store.writable import check_store_writable

__all__ = ["GRACE_S", "STOP_SIGNALS", "run_daemon"]

GRACE_S = 5.0


#: The signals that stop a daemon; blocked in every thread, awaited by the main one.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def run_daemon(home: NodeHome, db_url: str, listen: str | None) -> int:
    """Runs the node until a termination signal; returns the exit code."""
    # Before any thread exists, so that every thread inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    configure_logging()
    address = listen or home.config.listen
    host, _ = split_address(address, allow_port_zero=True)
    with hold_home(home.path) as held:
        check_store_writable(db_url)
        store = open_store(db_url)
        code = _serve(home, store, db_url, host, address, held)
    leave(code)
    return code


def _serve(
    home: NodeHome, store: SqlStore, db_url: str, host: str, address: str, held: HeldHome
) -> int:
    schedule = schedule_for(home)
    loop = None if schedule is None else SyncLoop(home, store, grpc_connector(home), schedule)
    service = NodeService(home, store)
    count = home.config.answer_processes
    answering = (
        AnswerProcesses(home, db_url, count, service.answer, service.policy) if count else None
    )
    try:
        server = start_server(home, store, address, service=service, answering=answering)
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
        syncer = threading.Thread(
            target=loop.run if loop else lambda: None, name="gridpoint-sync-loop", daemon=True
        )
        syncer.start()
        received = signal.sigwait(STOP_SIGNALS)
        log_event("shutdown requested", signal=signal.Signals(received).name)
        if loop is not None:
            loop.stop()
        server.stop(GRACE_S)
        syncer.join(timeout=GRACE_S)
        if loop is not None:
            loop.drain(GRACE_S)
        log_event("node stopped", node_id=home.identity.node_id)
    finally:
        try:
            if answering is not None:
                answering.close()
        finally:
            service.close()
            store.close()
    return 0


def leave(code: int) -> None:
    """Ends the process once the home is released: a gRPC worker still stuck in a call (it
    ignored the cancellation) would otherwise keep an interpreter that serves nothing alive."""
    deadline = time.monotonic() + GRACE_S
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
    if len(busy) > 1:
        log_event("exiting with calls still busy", logging.WARNING, threads=len(busy) - 1)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
