"""When the daemon syncs with each peer: jittered rounds, per-peer backoff, a concurrency cap.

A pure decision table over a clock the caller passes in (seconds, any origin), so it is
tested with a fake clock and the daemon's loop (sync_loop.py) only carries it out:
- each peer has its own due time, one interval on (from the start, or from its last round)
  times a random factor in [1 - jitter, 1 + jitter], so peers (and nodes started together)
  drift apart instead of syncing in lockstep;
- after a round that could not reach the peer, the next waits interval x 2^failures (capped at max_backoff_s), with
  the same jitter: a peer that is down is tried at growing intervals, not every round;
- at most max_concurrent rounds run at once; due peers wait their turn, earliest due first;
- finished() says when a peer went down (its first failure) and when it came back, so that
  each is logged once, not at every retry.

Not thread-safe: one thread (the loop's) calls it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Change", "SyncSchedule"]

#: What a finished round changed about a peer: it went down, or came back.
Change = Literal["down", "back"] | None


@dataclass
class _Peer:
    due: float
    failures: int = 0
    running: bool = False


class SyncSchedule:
    """Due times of the peers; see the module docstring for the rules."""

    def __init__(
        self,
        interval_s: float,
        *,
        jitter: float = 0.2,
        max_backoff_s: float = 900.0,
        max_concurrent: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        if interval_s <= 0 or not 0 <= jitter < 1 or max_concurrent < 1 or max_backoff_s <= 0:
            raise ValueError("interval_s, max_backoff_s > 0, 0 <= jitter < 1, max_concurrent >= 1")
        self.interval_s = interval_s
        self.jitter = jitter
        self.max_backoff_s = max(max_backoff_s, interval_s)
        self.max_concurrent = max_concurrent
        self._rng = rng or random.Random()
        self._peers: dict[str, _Peer] = {}

    def update_peers(self, peer_ids: Iterable[str], now: float) -> None:
        """Follows the peer list: a new peer is first due one jittered interval on; a removed
        one is forgotten (a round of it still running just ends)."""
        current = set(peer_ids)
        for gone in set(self._peers) - current:
            del self._peers[gone]
        for new in current - set(self._peers):
            self._peers[new] = _Peer(due=now + self.delay_s(0))

    def take_due(self, now: float) -> list[str]:
        """The peers to sync now (marked running), earliest due first, within the cap."""
        free = self.max_concurrent - self.running()
        due = sorted(
            (p.due, peer_id) for peer_id, p in self._peers.items() if not p.running and p.due <= now
        )
        taken = [peer_id for _, peer_id in due[: max(0, free)]]
        for peer_id in taken:
            self._peers[peer_id].running = True
        return taken

    def finished(self, peer_id: str, ok: bool, now: float) -> Change:
        """Records a round's end and schedules the peer's next; what changed, if anything."""
        peer = self._peers.get(peer_id)
        if peer is None:  # removed while its round ran
            return None
        peer.running = False
        before = peer.failures
        peer.failures = 0 if ok else peer.failures + 1
        peer.due = now + self.delay_s(peer.failures)
        if not ok and before == 0:
            return "down"
        if ok and before > 0:
            return "back"
        return None

    def delay_s(self, failures: int) -> float:
        """Seconds to the next round after that many failures in a row, jittered."""
        base = min(self.max_backoff_s, self.interval_s * 2.0 ** min(failures, 32))
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def running(self) -> int:
        """How many rounds are running."""
        return sum(p.running for p in self._peers.values())

    def failures(self, peer_id: str) -> int:
        """The peer's failed rounds in a row (0 for an unknown peer)."""
        peer = self._peers.get(peer_id)
        return 0 if peer is None else peer.failures

    def due_at(self, peer_id: str) -> float | None:
        """When the peer's next round is due (None for an unknown peer)."""
        peer = self._peers.get(peer_id)
        return None if peer is None else peer.due

    def wait_s(self, now: float) -> float | None:
        """Seconds until the next peer is due (0 if one is, None if none waits); a peer
        waiting only for a free slot counts once one frees (the loop is woken then)."""
        if self.running() >= self.max_concurrent:
            return None
        waiting = [p.due for p in self._peers.values() if not p.running]
        return None if not waiting else max(0.0, min(waiting) - now)
