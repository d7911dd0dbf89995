"""A grid of 1,000 organizations, simulated in one process with the daemons' own sync code.

Every node is real where it matters: its own home, keys and SQLite store, its NodeService
answering signed requests, and sync_peer (refs, fetch, verification, storage) pulling from
its peers over the in-process transport (no sockets, no TLS). The trust graph is sparse and
random (each node has 3 to 5 neighbours, both ways); every node also pins node 0's key as an
author, unreachable but for node 0's neighbours, so records reach the rest only by relay.

Time is counted in rounds. In one round every node pulls once from each neighbour, nodes and
peers in a fresh random order: like daemons whose jittered rounds fall at random points of
each interval, a record may cross one hop or several in one round (on average about half a
round per hop). --records are published at node 0; the simulation runs rounds until every
node holds them, printing how many nodes hold them after each round and the bytes each node
received (Sync and Fetch answers, per record delivered, beside the envelope's size). A pull
from a peer that has taken in nothing since this node's last pull from it can only get an
empty page: unless --every-round, it is counted (with an empty page's bytes, measured) but
not run, which makes 1,000 nodes affordable on 2 cores and changes no figure.

    python bench/network_sim.py [--nodes 1000] [--records 5] [--seed 29] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from trust_graph import hops_from, trust_graph  # noqa: E402

from gridpoint.errors import PeerUnavailable  # noqa: E402
from gridpoint.node.catalog import sign_record  # noqa: E402
from gridpoint.node.daemon.service import NodeService  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.peers import sync as sync_module  # noqa: E402
from gridpoint.node.peers.inprocess import InProcessTransport  # noqa: E402
from gridpoint.node.peers.sync import sync_peer  # noqa: E402
from gridpoint.node.peers.transport import Connector, PeerTransport  # noqa: E402
from gridpoint.node.store.base import Peer  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.helpers import make_record  # noqa: E402
from tests.inprocess import Network, Node  # noqa: E402


def connector(net: Network, caller: Node, reachable: set[str]) -> Connector:
    """In-process transports from caller to the peers it can reach."""

    @contextmanager
    def connect(peer: Peer) -> Iterator[PeerTransport]:
        if peer.node_id not in reachable:
            raise PeerUnavailable(f"peer {peer.address} did not answer (unavailable)")
        service = net.nodes[peer.node_id].service
        with InProcessTransport(
            caller.home.identity, peer.address, peer.node_id, service.handle, service.handle_stream
        ) as transport:
            yield transport

    return connect


def add(net: Network, root: Path, name: str) -> Node:
    """net.add(name), with the store copied from one already migrated (3x faster to open)."""
    template = root / "template" / "catalog.db"
    if not template.exists():
        home = NodeHome(template.parent)
        home.init("template")
        open_store(home.db_url()).close()
    home = NodeHome(root / name)
    home.init(name)
    shutil.copy(template, root / name / "catalog.db")
    store = open_store(home.db_url())
    node = Node(home, store, NodeService(home, store))
    net.nodes[node.node_id] = node
    return node


def idle_round_bytes(nodes: list[Node], connectors: list[Connector]) -> int:
    """The bytes of one idle round's answer (an empty page), from a real one."""
    peer = nodes[1].store.list_peers()[0]
    report = sync_peer(nodes[1].home, nodes[1].store, peer, connectors[1], log_unreached=False)
    assert report.error is None and report.new == 0, report.error
    return report.received_bytes


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    adj = trust_graph(args.nodes, rng)
    hops = hops_from(adj, 0)
    net = Network(root)
    try:
        t = time.monotonic()
        nodes = [add(net, root, f"org{i:04d}") for i in range(args.nodes)]
        for i, node in enumerate(nodes):
            for j in adj[i]:
                net.trust(node, nodes[j])
            if i and 0 not in adj[i]:
                net.trust(node, nodes[0])  # the author's key; node 0 never answers this node
        connectors = [
            connector(net, node, {nodes[j].node_id for j in adj[i]}) for i, node in enumerate(nodes)
        ]
        setup_s = time.monotonic() - t
        records = [
            sign_record(nodes[0].home.identity, make_record(i, accuracy=0.5 + i / 1000))
            for i in range(args.records)
        ]
        idx = {node.node_id: i for i, node in enumerate(nodes)}
        empty = idle_round_bytes(nodes, connectors)
        nodes[0].store.add_records(records)
        ids = [r.id for r in records]
        envelope = statistics.mean(len(r.envelope) for r in records)
        received = [0] * args.nodes
        # How many times each node took in something new, and that count at each node's last
        # pull from each peer: a pull from a peer that has taken in nothing since is an empty
        # page, exactly, so unless --every-round it is counted (its bytes) but not run.
        version = [1] + [0] * (args.nodes - 1)
        seen: dict[tuple[int, int], int] = {}
        holding = [1]
        round_s = []
        pulls = skipped = 0
        while holding[-1] < args.nodes and len(holding) <= args.max_rounds:
            t = time.monotonic()
            order = list(range(args.nodes))
            rng.shuffle(order)
            for i in order:
                # The author pin never answers (a daemon backs it off): its neighbours only.
                neighbours = {nodes[j].node_id for j in adj[i]}
                peers = [p for p in nodes[i].store.list_peers() if p.node_id in neighbours]
                rng.shuffle(peers)
                for peer in peers:
                    j = idx[peer.node_id]
                    if not args.every_round and seen.get((i, j), 0) == version[j]:
                        received[i] += empty
                        skipped += 1
                        continue
                    seen[(i, j)] = version[j]
                    report = sync_peer(
                        nodes[i].home, nodes[i].store, peer, connectors[i], log_unreached=False
                    )
                    pulls += 1
                    received[i] += report.received_bytes
                    version[i] += report.new > 0
            round_s.append(time.monotonic() - t)
            holding.append(sum(len(n.store.record_signers(ids)) == len(ids) for n in nodes))
            if args.progress:
                print(
                    f"round {len(holding) - 1}: {holding[-1]} of {args.nodes} hold them "
                    f"({round_s[-1]:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        net.close()
    per_record = [received[i] / args.records for i in range(1, args.nodes)]
    return {
        "nodes": args.nodes,
        "records": args.records,
        "pages": "whole (as before refs)" if args.whole else "by reference, then fetch",
        "seed": args.seed,
        "hops_from_publisher": max(hops.values()),
        "degree_min_median_max": [
            min(len(a) for a in adj),
            statistics.median(len(a) for a in adj),
            max(len(a) for a in adj),
        ],
        "setup_s": round(setup_s, 1),
        "rounds_to_all": len(holding) - 1 if holding[-1] == args.nodes else None,
        "holding_after_round": holding,
        "round_s_median": round(statistics.median(round_s), 1) if round_s else None,
        "pulls_run": pulls,
        "pulls_counted_as_empty_pages": skipped,
        "empty_page_bytes": empty,
        "envelope_bytes": round(envelope),
        "bytes_per_node_per_record_median": round(statistics.median(per_record)),
        "bytes_per_node_per_record_max": round(max(per_record)),
        "ratio_to_envelope_median": round(statistics.median(per_record) / envelope, 2),
        "ratio_to_envelope_max": round(max(per_record) / envelope, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--records", type=int, default=5)
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--max-rounds", type=int, default=50)
    parser.add_argument("--progress", action="store_true", help="a line per round on stderr")
    parser.add_argument(
        "--every-round",
        action="store_true",
        help="run every pull, also those that can only get an empty page (slower, same result)",
    )
    parser.add_argument(
        "--whole",
        action="store_true",
        help="pull whole pages, as nodes did before sync by reference (for comparison)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.whole:
        sync_module._page = lambda client, _store, cursor, limit: client.sync_page(cursor, limit)
    with tempfile.TemporaryDirectory(prefix="gp-network-sim-") as tmp:
        out = run(args, Path(tmp))
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
