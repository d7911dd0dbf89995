"""A network of many organizations on one machine: real daemons relaying by their own syncs.

N daemons (default 50), each its own process and home on loopback with SQLite, joined by a
sparse random connected trust graph (each node pinned by 3 to 5 others, both ways, as `peer
add` pins them). Nobody runs `catalog sync`: the daemons' own periodic sync (interval
--interval, jittered, with backoff) does the work. Every node also pins the publishing node's
key at a closed port (standing in for the introductions of #29), so the records can reach a
node only by relay through its graph neighbours. Measured:

1. Idle: each daemon's CPU (share of one core) and RSS after warm-up, with no new records;
   CPU per idle round, and what that makes at the default 60 s interval with 5 peers.
2. Spread: one record published at node 0; time and rounds (time / interval) until all N
   hold it, beside the goal of 2 intervals per hop of the graph's diameter.
3. Bytes: --batch records published at node 0 at once; bytes of Sync/Fetch answers each node
   received (from the daemons' own "sync" log lines) per record delivered, beside the
   envelope's size (goal: at most 3x), with the idle rounds' bytes of the same window shown
   apart.
4. Churn: --kill nodes (never node 0) SIGKILLed, --batch more records published while they
   are down, then they are started again: nothing they held is lost, and all N converge.

    python bench/network.py [--nodes 50] [--interval 5] [--batch 20] [--kill 10] [--json]

Every daemon it starts is stopped on exit, Ctrl-C or SIGTERM included.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.node.catalog import sign_record  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.helpers import make_record, pin  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from trust_graph import hops_from, trust_graph  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Daemon:
    """One node: its home, port, and (while running) its process."""

    index: int
    home: NodeHome
    port: int
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.home.path / f"daemon-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gridpoint", "--home", str(self.home.path), "node", "start"],
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                cwd=ROOT,
            )

    def wait_listening(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("listening on "):
            raise RuntimeError(f"node {self.index} did not start: {self.logs[-1].read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def cpu_s(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def holds(self, record_ids: list[str]) -> int:
        db = self.home.path / "catalog.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            marks = ",".join("?" * len(record_ids))
            row = conn.execute(f"select count(*) from records where id in ({marks})", record_ids)
            return int(row.fetchone()[0])

    def sync_events(self) -> list[dict[str, Any]]:
        out = []
        for log in self.logs:
            for line in log.read_text().splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    if event.get("event") == "sync":
                        out.append(event)
        return out


# --- setting up homes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(home: NodeHome, port: int, interval: float) -> NodeHome:
    text = home.config_path.read_text()
    for key, value in {
        "listen": f'"127.0.0.1:{port}"',
        "interval_s": str(interval),
        "timeout_s": "10.0",
    }.items():
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
    home.config_path.write_text(text)
    return NodeHome(home.path)


def build(root: Path, adj: list[set[int]], interval: float) -> list[Daemon]:
    nodes = []
    for i in range(len(adj)):
        home = NodeHome(root / f"n{i:03d}")
        home.init(f"org{i:03d}")
        port = free_port()
        nodes.append(Daemon(i, configure(home, port, interval), port))
    nowhere = f"127.0.0.1:{free_port()}"  # a closed port: the author's key, pinned alone
    for node in nodes:
        store = open_store(node.home.db_url())
        try:
            for j in sorted(adj[node.index]):
                pin(store, nodes[j].home, nodes[j].address)
            if node.index != 0 and 0 not in adj[node.index]:
                pin(store, nodes[0].home, nowhere)
        finally:
            store.close()
    return nodes


def publish(node: Daemon, count: int, start: int) -> tuple[list[str], int]:
    """count new records signed by node, added to its catalog; their ids, an envelope's size."""
    records = [
        sign_record(node.home.identity, make_record(start + i, accuracy=0.5 + i / 1000))
        for i in range(count)
    ]
    store = open_store(node.home.db_url())
    try:
        store.add_records(records)
    finally:
        store.close()
    return [r.id for r in records], int(statistics.mean(len(r.envelope) for r in records))


# --- measuring -----------------------------------------------------------------------------


def start_all(nodes: list[Daemon]) -> float:
    started = time.monotonic()
    for node in nodes:
        node.start()
    threads = [threading.Thread(target=n.wait_listening) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def wait_held(
    nodes: list[Daemon], ids: list[str], timeout_s: float
) -> tuple[dict[int, float], float]:
    """Seconds until each node holds all ids (absent: not within timeout_s)."""
    t0 = time.monotonic()
    done: dict[int, float] = {}
    while len(done) < len(nodes) and time.monotonic() - t0 < timeout_s:
        for node in nodes:
            if node.index not in done and node.holds(ids) == len(ids):
                done[node.index] = time.monotonic() - t0
        time.sleep(0.2)
    return done, time.monotonic() - t0


def bytes_between(node: Daemon, since: float, until: float) -> int:
    total = 0
    for event in node.sync_events():
        ts = datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if since <= ts.timestamp() <= until:
            total += int(event.get("received_bytes") or 0)
    return total


def rounds_between(node: Daemon, since: float, until: float) -> int:
    count = 0
    for event in node.sync_events():
        ts = datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        count += since <= ts.timestamp() <= until
    return count


def idle(nodes: list[Daemon], seconds: float, interval: float) -> dict[str, Any]:
    cpu0 = {n.index: n.cpu_s() for n in nodes}
    w0 = time.time()
    time.sleep(seconds)
    w1 = time.time()
    cpu = {n.index: (n.cpu_s() - cpu0[n.index]) / (w1 - w0) for n in nodes}
    rss = {n.index: n.rss_mb() for n in nodes}
    rounds = {n.index: rounds_between(n, w0, w1) for n in nodes}
    idle_bytes = {n.index: bytes_between(n, w0, w1) for n in nodes}
    per_round = [cpu[i] * (w1 - w0) / rounds[i] for i in cpu if rounds[i]]
    cpu_per_round = statistics.median(per_round) if per_round else 0.0
    return {
        "seconds": round(w1 - w0, 1),
        "cpu_core_share_median": round(statistics.median(cpu.values()), 4),
        "cpu_core_share_max": round(max(cpu.values()), 4),
        "rss_mb_median": round(statistics.median(rss.values()), 1),
        "rss_mb_max": round(max(rss.values()), 1),
        "rss_mb_total": round(sum(rss.values()), 1),
        "rounds_per_node_per_s": round(statistics.mean(rounds.values()) / (w1 - w0), 3),
        "cpu_s_per_idle_round_median": round(cpu_per_round, 5),
        "idle_bytes_per_node_per_s": round(statistics.mean(idle_bytes.values()) / (w1 - w0), 1),
        "at_60s_interval_5_peers_core_share": round(cpu_per_round * 5 / 60, 5),
        "per_node": {i: {"cpu": round(cpu[i], 4), "rss_mb": round(rss[i], 1)} for i in cpu},
    }


def spread(
    nodes: list[Daemon], adj: list[set[int]], count: int, start: int, interval: float
) -> dict[str, Any]:
    ids, envelope = publish(nodes[0], count, start)
    w0 = time.time()
    done, took = wait_held(nodes, ids, timeout_s=max(120.0, 40 * interval))
    w1 = time.time() + interval  # rounds that were under way when the last node got them
    received = {n.index: bytes_between(n, w0, w1) for n in nodes[1:]}
    hops = hops_from(adj, 0)
    return {
        "records": count,
        "envelope_bytes": envelope,
        "held_by": len(done),
        "all_held_s": round(max(done.values()), 2) if len(done) == len(nodes) else None,
        "all_held_rounds": round(max(done.values()) / interval, 2)
        if len(done) == len(nodes)
        else None,
        "hops_from_publisher": max(hops.values()),
        "median_s_by_hop": {
            h: round(statistics.median(done[i] for i in done if hops[i] == h), 2)
            for h in sorted(set(hops.values()))
            if any(hops[i] == h for i in done)
        },
        "window_s": round(took, 1),
        "bytes_per_node_per_record_median": round(statistics.median(received.values()) / count),
        "bytes_per_node_per_record_max": round(max(received.values()) / count),
        "ratio_to_envelope_median": round(
            statistics.median(received.values()) / count / envelope, 2
        ),
        "ratio_to_envelope_max": round(max(received.values()) / count / envelope, 2),
    }


def churn(
    nodes: list[Daemon],
    adj: list[set[int]],
    kill: int,
    count: int,
    start: int,
    interval: float,
    rng: random.Random,
) -> dict[str, Any]:
    victims = rng.sample([n for n in nodes if n.index != 0], kill)
    before = {n.index: _count(n) for n in victims}
    for n in victims:
        n.kill()
    alive = [n for n in nodes if n.process is not None]
    ids, _ = publish(nodes[0], count, start)
    reachable = hops_from(adj, 0, {n.index for n in alive})
    alive_reach = [n for n in alive if n.index in reachable]
    done_alive, _ = wait_held(alive_reach, ids, timeout_s=max(120.0, 40 * interval))
    t0 = time.monotonic()
    for n in victims:
        n.start()
    for n in victims:
        n.wait_listening()
    done, _ = wait_held(nodes, ids, timeout_s=max(180.0, 60 * interval))
    after = {n.index: _count(n) for n in victims}
    return {
        "killed": sorted(n.index for n in victims),
        "alive_reachable": len(alive_reach),
        "alive_reachable_converged": len(done_alive),
        "lost_on_killed": sum(max(0, before[i] - after[i]) for i in before),
        "all_converged": len(done) == len(nodes),
        "converged_s_after_restart": round(time.monotonic() - t0, 1)
        if len(done) == len(nodes)
        else None,
    }


def _count(node: Daemon) -> int:
    db = node.home.path / "catalog.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("select count(*) from records").fetchone()[0])


def run(args: argparse.Namespace, root: Path, nodes_out: list[Daemon]) -> dict[str, Any]:
    rng = random.Random(args.seed)
    adj = trust_graph(args.nodes, rng)
    diameter = max(max(hops_from(adj, v).values()) for v in range(args.nodes))
    degrees = [len(a) for a in adj]
    t = time.monotonic()
    nodes = build(root, adj, args.interval)
    nodes_out += nodes
    setup_s = time.monotonic() - t
    start_s = start_all(nodes)
    time.sleep(max(3 * args.interval, 10.0))  # first rounds, and the author pin backed off
    out: dict[str, Any] = {
        "nodes": args.nodes,
        "interval_s": args.interval,
        "seed": args.seed,
        "degree_min_median_max": [min(degrees), statistics.median(degrees), max(degrees)],
        "diameter": diameter,
        "setup_s": round(setup_s, 1),
        "start_s": round(start_s, 1),
        "cpus": os.cpu_count(),
    }
    out["idle"] = idle(nodes, args.idle_seconds, args.interval)
    five = [i for i, a in enumerate(adj) if len(a) == 5]
    out["idle"]["five_peer_nodes"] = {
        "count": len(five),
        "cpu_core_share_median": round(
            statistics.median(out["idle"]["per_node"][i]["cpu"] for i in five), 4
        )
        if five
        else None,
        "rss_mb_median": round(
            statistics.median(out["idle"]["per_node"][i]["rss_mb"] for i in five), 1
        )
        if five
        else None,
    }
    if not args.per_node:
        del out["idle"]["per_node"]
    out["one_record"] = spread(nodes, adj, 1, 0, args.interval)
    out["one_record"]["goal_s"] = 2 * args.interval * diameter
    out["batch"] = spread(nodes, adj, args.batch, 1000, args.interval)
    if args.kill:
        out["churn"] = churn(nodes, adj, args.kill, args.batch, 2000, args.interval, rng)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5.0, help="sync interval_s")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--kill", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--per-node", action="store_true", help="idle figures of every node")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    nodes: list[Daemon] = []

    def stop_all() -> None:
        for node in nodes:  # all asked at once, then each waited for (SIGKILL after 15 s)
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGTERM)
        for node in nodes:
            node.kill(signal.SIGTERM)

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="gp-network-") as tmp:
        try:
            out = run(args, Path(tmp), nodes)
        except KeyboardInterrupt:
            return 130
        finally:
            stop_all()
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
