"""The daemon's periodic sync: carries out a SyncSchedule (schedule.py) with real rounds.

Each pass reads the peer list (so `peer add` / `peer remove` take effect without a restart),
starts the rounds that are due, each on a thread of its own (at most the schedule's
max_concurrent at once), and sleeps until the next is due, a round ends, or stop(). A peer
that cannot be reached (a round that got no page) is backed off and logged once when it goes down ("peer unreachable", with when it is tried next)
and once when it comes back, never at each retry. The clock is a parameter, so tests drive
step() with a fake one.

Must never: let one peer's failure, or the store's, end the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gridpoint.node.daemon.schedule import SyncSchedule
from gridpoint.node.home import NodeHome
from gridpoint.node.logs import log_event
from gridpoint.node.peers.sync import SyncReport, sync_peer
from gridpoint.node.peers.transport import Connector
from gridpoint.node.store.base import CatalogStore, Peer

__all__ = ["SyncLoop", "schedule_for"]

#: One round with one peer: sync_peer's shape, without logging a peer it could not reach
#: (the loop does, once).
RoundFn = Callable[[NodeHome, CatalogStore, Peer, Connector], SyncReport]


def _round(home: NodeHome, store: CatalogStore, peer: Peer, connect: Connector) -> SyncReport:
    return sync_peer(home, store, peer, connect, log_unreached=False)


def schedule_for(home: NodeHome) -> SyncSchedule | None:
    """The schedule the home's [sync] settings ask for; None when periodic sync is off."""
    sync = home.config.sync
    if sync.interval_s <= 0:
        return None
    return SyncSchedule(
        sync.interval_s,
        jitter=sync.jitter,
        max_backoff_s=sync.max_backoff_s,
        max_concurrent=sync.max_concurrent,
    )


class SyncLoop:
    """Runs rounds with the home's peers as the schedule says, until stop()."""

    def __init__(
        self,
        home: NodeHome,
        store: CatalogStore,
        connect: Connector,
        schedule: SyncSchedule,
        *,
        clock: Callable[[], float] = time.monotonic,
        round_fn: RoundFn = _round,
    ) -> None:
        self._home = home
        self._store = store
        self._connect = connect
        self._schedule = schedule
        self._clock = clock
        self._round_fn = round_fn
        self._cond = threading.Condition()
        self._stopped = False
        self._threads: set[threading.Thread] = set()

    def step(self) -> float | None:
        """One pass: follow the peer list, start the due rounds; seconds until the next is
        due (None when nothing waits but running rounds)."""
        peers = {p.node_id: p for p in self._store.list_peers()}
        with self._cond:
            now = self._clock()
            self._schedule.update_peers(peers, now)
            due = [] if self._stopped else self._schedule.take_due(now)
            for peer_id in due:
                thread = threading.Thread(
                    target=self._run_round,
                    args=(peers[peer_id],),
                    name="gridpoint-sync",
                    daemon=True,
                )
                self._threads.add(thread)
                thread.start()
            return self._schedule.wait_s(now)

    def run(self) -> None:
        """Passes until stop(); waits at most one interval between them."""
        interval = self._schedule.interval_s
        while True:
            try:
                wait = self.step()
            except Exception as exc:  # the store failing (e.g. list_peers): retry later
                log_event("sync round failed", logging.ERROR, error=exc.__class__.__name__)
                wait = interval
            with self._cond:
                if self._stopped:
                    return
                self._cond.wait(interval if wait is None else min(wait, interval))

    def stop(self) -> None:
        """Ends run() at once; rounds already running finish on their own."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> None:
        """Waits (at most timeout_s) for the running rounds to end."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run_round(self, peer: Peer) -> None:
        try:
            report = self._round_fn(self._home, self._store, peer, self._connect)
            # Backoff is for a peer that cannot be reached; one that answered a page but then
            # misbehaved keeps its rounds (its failure is in its "sync" line).
            ok, error = report.error is None or report.pages > 0, report.error
        except Exception as exc:  # sync_peer raises nothing; a replacement might
            ok, error = False, exc.__class__.__name__
        with self._cond:
            now = self._clock()
            change = self._schedule.finished(peer.node_id, ok, now)
            retry_in = (self._schedule.due_at(peer.node_id) or now) - now
            self._threads.discard(threading.current_thread())
            self._cond.notify_all()
        if change == "down":
            log_event(
                "peer unreachable",
                logging.WARNING,
                peer=peer.node_id,
                address=peer.address,
                error=error,
                retry_in_s=round(retry_in, 1),
                note="retried at growing intervals; logged again only when it is back",
            )
        elif change == "back":
            log_event("peer reachable again", peer=peer.node_id, address=peer.address)
