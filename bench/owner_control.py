"""The owner's control, measured: what a sharing policy costs sync, how fast tombstones and
key rotations spread, and what the outbound ledger costs per synced record.

All nodes run in this process over the in-process transport (real services, real SQLite
stores, every envelope signed and verified; no sockets, which both sides of each ratio would
share alike).

1. Sync throughput with a 10-rule policy beside no policy, in one run: two serving nodes hold
   the same N records, one with no policy, one with 10 rules (none of which keeps the peer's
   records from it, so both send all N); a fresh peer pulls each, alternately, R times.
   Goal: policy / none >= 0.9. Also: the same with 10% of the records sent as the author's
   signed variants (each signed once, when first served).
2. Propagation: a tombstone and a key rotation published by node 0 of a chain of 5 and a ring
   of 20 nodes (each syncing with its two neighbours; every node trusts node 0 as an author).
   Rounds: every node pulls from each neighbour once, in a shuffled order. Prints the rounds
   (and syncs) until every node applied the statement, and the wall time.
3. Ledger cost: appending one sync page's entries (the serving node's only ledger work), per
   synced record, and as a share of the time sync takes per record (goal < 5%); beside it,
   the sync rate with the ledger switched off, measured alternately in the same run.

    python bench/owner_control.py [--records 5000] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.node.catalog import sign_record  # noqa: E402
from gridpoint.node.control import ledger as ledger_module  # noqa: E402
from gridpoint.node.control.keys import rotate  # noqa: E402
from gridpoint.node.control.withdraw import withdraw  # noqa: E402
from gridpoint.node.peers.sync import sync_all  # noqa: E402
from gridpoint.node.pseudonyms import pseudonym  # noqa: E402
from gridpoint.node.store.control_base import LedgerEntry  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.control.world import World  # noqa: E402
from tests.helpers import make_record, signed_records  # noqa: E402
from tests.inprocess import Node  # noqa: E402

RULES = "\n".join(
    f'[[sharing.rules]]\nname = "r{i}"\nfilter = "task.type = \'task-{i}\'"\ngroups = ["x"]\n'
    for i in range(10)
)


def _policy(peer_ids: list[str], rules: str) -> str:
    members = ", ".join(f'"{p}"' for p in peer_ids)
    return f"\n[sharing]\n[sharing.groups]\nx = [{members}]\n{rules}"


class _NoLedger:
    """Ledger.note replaced by nothing while active: sync without the ledger."""

    def __enter__(self) -> None:
        self._note = ledger_module.Ledger.note
        ledger_module.Ledger.note = lambda *_a, **_k: None  # type: ignore[method-assign]

    def __exit__(self, *_exc: object) -> None:
        ledger_module.Ledger.note = self._note  # type: ignore[method-assign]


def ledger_append_us(root: Path, pages: int = 20, per_page: int = 500) -> float:
    """Median microseconds per entry of appending one sync page's entries to a ledger."""
    store = open_store(f"sqlite:///{root / 'ledger.db'}")
    costs = []
    for page in range(pages):
        now = datetime.now(UTC)
        entries = [
            LedgerEntry(now, "b" * 40, "record", f"{page:032x}{i:032x}", f"{i:064x}", "default")
            for i in range(per_page)
        ]
        start = time.perf_counter()
        store.append_ledger(entries)
        costs.append((time.perf_counter() - start) / per_page * 1e6)
    store.close()
    return statistics.median(costs)


def throughput(root: Path, records: int, repeats: int) -> dict[str, float]:
    world = World(root, lambda name: f"sqlite:///{root / f'{name}.db'}")
    servers = {kind: world.node(kind) for kind in ("plain", "ruled", "mixed")}
    for server in servers.values():
        for start in range(0, records, 5000):
            server.store.add_records(signed_records(server.home, min(5000, records - start), start))
    _add_tenth(servers["mixed"], records)
    servers["plain"].store.add_records(signed_records(servers["plain"].home, records // 10, 10**6))
    servers["ruled"].store.add_records(signed_records(servers["ruled"].home, records // 10, 10**6))
    # Group x names the peers to come: make them first, then write the policies.
    arms = [*servers, "no-ledger"]
    peers = {(kind, i): world.node(f"{kind}-peer-{i}") for kind in arms for i in range(repeats)}
    ids = [p.node_id for p in peers.values()]
    for kind, rules in (("ruled", RULES), ("mixed", _tenth_as_variants(RULES))):
        config = servers[kind].home.config_path
        config.write_text(config.read_text() + _policy(ids, rules))
    rates: dict[str, list[float]] = {kind: [] for kind in arms}
    for i in range(repeats):
        for kind in arms:
            server, peer = servers.get(kind, servers["plain"]), peers[(kind, i)]
            world.mutual(peer, server)
            with _NoLedger() if kind == "no-ledger" else contextlib.nullcontext():
                start = time.perf_counter()
                report = world.sync(peer, server)
                elapsed = time.perf_counter() - start
            assert report.error is None and report.new == records + records // 10, report
            rates[kind].append(report.new / elapsed)
    world.close()
    plain = statistics.median(rates["plain"])
    append_us = ledger_append_us(root)
    return {
        "records": records + records // 10,
        "plain_records_per_s": plain,
        "ruled_records_per_s": statistics.median(rates["ruled"]),
        "ruled_over_plain": statistics.median(rates["ruled"]) / plain,
        "variants_records_per_s": statistics.median(rates["mixed"]),
        "variants_over_plain": statistics.median(rates["mixed"]) / plain,
        "no_ledger_records_per_s": statistics.median(rates["no-ledger"]),
        "ledger_us_per_record": append_us,
        "ledger_share_of_sync": append_us * 1e-6 * plain,
    }


def _tenth_as_variants(rules: str) -> str:
    """The 10 rules, the last one sending the study 'tenth' to x as the server's signed
    variants without their curves."""
    return rules.replace(
        'name = "r9"\nfilter = "task.type = \'task-9\'"',
        'name = "r9"\nstudies = ["tenth"]\nparts = ["search_space", "base_model", "lineage"]',
    )


def _add_tenth(server: Node, records: int) -> None:
    """Adds records of the study 'tenth' (a tenth of the total) to server."""
    study = pseudonym(server.home.secret, "study", "tenth")
    server.store.add_records(
        [
            sign_record(server.home.identity, replace(make_record(10**6 + i), study=study))
            for i in range(records // 10)
        ]
    )


def propagation(root: Path, size: int, ring: bool, seed: int = 0) -> dict[str, object]:
    world = World(root, lambda name: f"sqlite:///{root / f'{name}.db'}")
    nodes = [world.node(f"n{i}") for i in range(size)]
    edges = [(i, i + 1) for i in range(size - 1)] + ([(size - 1, 0)] if ring else [])
    for i, j in edges:
        world.mutual(nodes[i], nodes[j])
    for node in nodes[1:]:
        if not any(p.node_id == nodes[0].node_id for p in node.store.list_peers()):
            world.trust(node, nodes[0])
    neighbours = {i: [j for e in edges for j in e if i in e and j != i] for i in range(size)}
    record_id = world.publish(nodes[0], 1)
    rng = random.Random(seed)

    def rounds_until(done: Callable[[], bool]) -> tuple[int, int, float]:
        rounds = syncs = 0
        start = time.perf_counter()
        while not done() and rounds < 4 * size:
            rounds += 1
            for i in rng.sample(range(size), size):
                for j in neighbours[i]:
                    # Node 0's pulls fail until its neighbour re-keyed (as over TLS): counted.
                    entry = [
                        p
                        for p in nodes[i].store.list_peers()
                        if world.nodes.get(p.node_id) is nodes[j]
                    ]
                    sync_all(
                        nodes[i].home,
                        nodes[i].store,
                        world.connector(nodes[i]),
                        only=entry[0].node_id,
                    )
                    syncs += 1
        return rounds, syncs, time.perf_counter() - start

    rounds_until(lambda: all(record_id in world.ids(n) for n in nodes))
    withdraw(nodes[0].home, nodes[0].store, [record_id])
    t_rounds, t_syncs, t_wall = rounds_until(
        lambda: all(record_id not in world.ids(n) for n in nodes)
    )
    old = nodes[0].node_id
    rotate(nodes[0].home, nodes[0].store)
    nodes[0] = world.reload(nodes[0])
    new = nodes[0].node_id
    r_rounds, r_syncs, r_wall = rounds_until(
        lambda: all(
            new in {p.node_id for p in n.store.list_peers()}
            and old not in {p.node_id for p in n.store.list_peers()}
            for n in nodes[1:]
        )
    )
    world.close()
    return {
        "nodes": size,
        "shape": "ring" if ring else "chain",
        "tombstone_rounds": t_rounds,
        "tombstone_syncs": t_syncs,
        "tombstone_wall_s": t_wall,
        "rotation_rounds": r_rounds,
        "rotation_syncs": r_syncs,
        "rotation_wall_s": r_wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gp-bench-control-"))
    figures = {
        "throughput": throughput(root / "throughput", args.records, args.repeats),
        "propagation": [
            propagation(root / "chain5", 5, ring=False),
            propagation(root / "ring20", 20, ring=True),
        ],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    t = figures["throughput"]
    print(f"records per pull:                 {t['records']}")
    print(f"sync, no policy:                  {t['plain_records_per_s']:8.0f} records/s")
    print(f"sync, 10 rules:                   {t['ruled_records_per_s']:8.0f} records/s")
    print(f"  10 rules / no policy:           {t['ruled_over_plain']:.2f}  (goal >= 0.90)")
    print(f"sync, 10 rules, 10% as variants:  {t['variants_records_per_s']:8.0f} records/s")
    print(f"  / no policy:                    {t['variants_over_plain']:.2f}")
    print(f"sync, no policy, ledger off:      {t['no_ledger_records_per_s']:8.0f} records/s")
    print(
        f"ledger, per synced record:        {t['ledger_us_per_record']:.0f} us (one page's append)"
    )
    print(f"ledger, share of sync time:       {t['ledger_share_of_sync'] * 100:.1f}%  (goal < 5%)")
    for p in figures["propagation"]:
        print(
            f"{p['shape']} of {p['nodes']}: tombstone in {p['tombstone_rounds']} round(s) "
            f"({p['tombstone_syncs']} syncs, {p['tombstone_wall_s']:.1f} s); rotation in "
            f"{p['rotation_rounds']} round(s) ({p['rotation_syncs']} syncs, "
            f"{p['rotation_wall_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
