"""The daemon's sync schedule (jitter, per-peer backoff, a cap on rounds at once) on a fake
clock, and the loop that carries it out over the in-process transport."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from gridpoint.node.daemon.schedule import SyncSchedule
from gridpoint.node.daemon.sync_loop import SyncLoop
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.sync import SyncReport, sync_peer
from gridpoint.node.peers.transport import Connector
from gridpoint.node.store.base import CatalogStore, Peer
from tests.helpers import signed_records
from tests.inprocess import Network, Node


def test_rounds_fall_one_jittered_interval_apart_so_peers_drift_out_of_lockstep() -> None:
    # Prepare
    schedule = SyncSchedule(10.0, jitter=0.2, rng=random.Random(1))
    peers = [f"p{i}" for i in range(50)]
    # Execute
    schedule.update_peers(peers, now=100.0)
    first = [schedule.due_at(p) or 0.0 for p in peers]
    taken = schedule.take_due(now=112.0)[0]
    schedule.finished(taken, ok=True, now=110.0)
    later = [schedule.delay_s(0) for _ in range(200)]
    # Assert: first rounds 8 to 12 s on, not in lockstep; so are later ones.
    assert all(108.0 <= d <= 112.0 for d in first)
    assert len(set(first)) == 50 and max(first) - min(first) > 2.0
    assert 118.0 <= (schedule.due_at(taken) or 0) <= 122.0
    assert min(later) >= 8.0 and max(later) <= 12.0 and max(later) - min(later) > 2.0


def test_a_failing_peer_is_retried_at_doubling_intervals_up_to_the_cap() -> None:
    # Prepare: no jitter, so the delays are exact.
    schedule = SyncSchedule(10.0, jitter=0.0, max_backoff_s=100.0)
    schedule.update_peers(["down"], now=0.0)
    now, attempts = 0.0, []
    # Execute: the peer fails every round it is given, over 10 simulated minutes.
    while now < 600.0:
        for peer in schedule.take_due(now):
            attempts.append(now)
            schedule.finished(peer, ok=False, now=now)
        now += 1.0
    # Assert: gaps 20, 40, 80, then the 100 s cap.
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[:5] == [20.0, 40.0, 80.0, 100.0, 100.0]


def test_going_down_and_coming_back_are_each_told_once() -> None:
    # Prepare
    schedule = SyncSchedule(10.0, jitter=0.0)
    schedule.update_peers(["p"], now=0.0)
    outcomes = [False, False, False, True, True, False]
    changes = []
    # Execute
    for ok in outcomes:
        now = schedule.due_at("p") or 0.0
        assert schedule.take_due(now) == ["p"]
        changes.append(schedule.finished("p", ok=ok, now=now))
    # Assert
    assert changes == ["down", None, None, "back", None, "down"]


def test_no_more_than_max_concurrent_rounds_run_at_once() -> None:
    # Prepare: ten peers, all due.
    schedule = SyncSchedule(10.0, max_concurrent=3)
    schedule.update_peers([f"p{i}" for i in range(10)], now=0.0)
    # Execute
    first = schedule.take_due(now=20.0)
    none_free = schedule.take_due(now=20.0)
    full_wait = schedule.wait_s(now=20.0)
    schedule.finished(first[0], ok=True, now=21.0)
    one_more = schedule.take_due(now=21.0)
    # Assert: three, then none until one ends, then one more (never the one just done).
    assert len(first) == 3 and none_free == [] and full_wait is None
    assert len(one_more) == 1 and one_more[0] not in first
    assert schedule.running() == 3


def test_a_removed_peer_is_forgotten_even_mid_round() -> None:
    # Prepare
    schedule = SyncSchedule(10.0)
    schedule.update_peers(["a", "b"], now=0.0)
    [*running] = schedule.take_due(now=50.0)
    # Execute
    schedule.update_peers(["b"], now=51.0)
    change = schedule.finished("a", ok=False, now=52.0)
    # Assert
    assert "a" in running and change is None and schedule.due_at("a") is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_loop_backs_off_a_down_peer_logs_it_once_and_catches_up_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: A trusts B (up, 3 records) and D (down, 2 records); 10 s rounds, no jitter.
    net = Network(tmp_path)
    try:
        a, b, d = net.add("A"), net.add("B"), net.add("D")
        for x, y in [(a, b), (b, a), (a, d), (d, a)]:
            net.trust(x, y)
        b.store.add_records(signed_records(b.home, 3))
        d.store.add_records(signed_records(d.home, 2, start=10))
        net.down.add(d.node_id)
        clock = FakeClock()
        rounds: list[tuple[float, str]] = []

        def counted(home: NodeHome, store: CatalogStore, peer: Peer, c: Connector) -> SyncReport:
            rounds.append((clock.now, peer.node_id))
            return sync_peer(home, store, peer, c, log_unreached=False)

        schedule = SyncSchedule(10.0, jitter=0.0, max_backoff_s=80.0, rng=random.Random(0))
        loop = SyncLoop(a.home, a.store, net.connector(a), schedule, clock=clock, round_fn=counted)
        caplog.set_level(logging.INFO, logger="gridpoint")
        # Execute: 5 minutes with D down, then 3 minutes with D back.
        run(loop, clock, until=300.0)
        down_rounds = [t for t, p in rounds if p == d.node_id]
        net.down.discard(d.node_id)
        run(loop, clock, until=480.0)
    finally:
        net.close()
    # Assert: B every 10 s; D at doubling gaps capped at 80 s; one line each way.
    b_rounds = [t for t, p in rounds if p == b.node_id]
    assert {y - x for x, y in zip(b_rounds, b_rounds[1:], strict=False)} == {10.0}
    gaps = [y - x for x, y in zip(down_rounds, down_rounds[1:], strict=False)]
    assert gaps[:4] == [20.0, 40.0, 80.0, 80.0]
    events = [r.getMessage() for r in caplog.records]
    assert events.count("peer unreachable") == 1
    assert events.count("peer reachable again") == 1
    assert held(a) == held(b) | held(d) and len(held(a)) == 5


def run(loop: SyncLoop, clock: FakeClock, until: float) -> None:
    """Steps the loop second by second of fake time, each round finished before the next."""
    while clock.now < until:
        loop.step()
        loop.drain(30.0)
        clock.now += 1.0


def held(node: Node) -> set[str]:
    return {r.id for r in node.store.query(None, limit=1000)}
