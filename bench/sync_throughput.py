"""Sync throughput over real gRPC on loopback, beside the raw Ed25519 verify rate.

Node A (a real `gridpoint node start` process) holds N signed records; a fresh node B pulls
them all with the same code `catalog sync` uses (verify every envelope, store idempotently),
--repeats times. Beside each pull, in the same run, the raw Ed25519 verify rate of this
machine: on one thread, and on as many threads as sync verifies with (the same core count).
Prints records/s verified and stored, the raw rates, and their ratios; the median of the
repeats (issue 29's goal: sync >= 0.8 of the raw rate on the same core count).

    python bench/sync_throughput.py [--records 20000] [--page-size 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.peers import sync as sync_module  # noqa: E402
from gridpoint.node.peers.grpc_transport import grpc_connector  # noqa: E402
from gridpoint.node.peers.sync import sync_peer  # noqa: E402
from gridpoint.node.peers.trust import add_peer  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.helpers import Daemon, pin, signed_records  # noqa: E402


def raw_verify_rate(threads: int = 1, seconds: float = 2.0) -> float:
    """Ed25519 verifications per second of a record-sized message on `threads` threads."""
    key = Ed25519PrivateKey.generate()
    payload = b"x" * 700
    sig, public = key.sign(payload), key.public_key()
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < stop:
            for _ in range(100):
                public.verify(sig, payload)
            counts[i] += 100

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def one_pull(work: Path, a: NodeHome, da: Daemon, i: int, page_size: int, records: int) -> float:
    b = NodeHome(work / f"b{i}")
    b.init(f"B{i}")
    b.config_path.write_text(
        b.config_path.read_text().replace("page_size = 500", f"page_size = {page_size}")
    )
    b = NodeHome(b.path)
    store_b = open_store(b.db_url())
    store_a = open_store(a.db_url())
    try:
        pin(store_a, b, "127.0.0.1:1")
        add_peer(b, store_b, da.address, a.tls_fingerprint)
        peer = store_b.list_peers()[0]
        start = time.perf_counter()
        report = sync_peer(b, store_b, peer, grpc_connector(b))
        elapsed = time.perf_counter() - start
        assert report.error is None and report.new == records, report
        return report.new / elapsed
    finally:
        store_a.close()
        store_b.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = sync_module._VERIFY_THREADS
    work = Path(tempfile.mkdtemp(prefix="gp-bench-sync-"))
    a = NodeHome(work / "a")
    a.init("A")
    store_a = open_store(a.db_url())
    for start in range(0, args.records, 5000):
        store_a.add_records(signed_records(a, min(5000, args.records - start), start))
    store_a.close()
    da = Daemon.start(a)
    rows = []
    try:
        for i in range(args.repeats):
            raw1 = raw_verify_rate(1)
            rawn = raw_verify_rate(threads)
            rate = one_pull(work, a, da, i, args.page_size, args.records)
            raw1 = (raw1 + raw_verify_rate(1)) / 2
            rawn = (rawn + raw_verify_rate(threads)) / 2
            rows.append((rate, raw1, rawn))
            print(
                f"pull {i + 1}: sync {rate:6.0f} records/s   raw verify 1 thread {raw1:6.0f}/s, "
                f"{threads} threads {rawn:6.0f}/s   sync/raw: {rate / raw1:.2f} (1 thread), "
                f"{rate / rawn:.2f} ({threads} threads)"
            )
    finally:
        da.kill()
    r1 = statistics.median(r / one for r, one, _ in rows)
    rn = statistics.median(r / n for r, _, n in rows)
    print(
        f"median of {args.repeats} ({args.records} records, page {args.page_size}): "
        f"sync {statistics.median(r for r, _, _ in rows):.0f} records/s; "
        f"sync / raw verify {r1:.2f} (1 thread), {rn:.2f} ({threads} threads; goal >= 0.8)"
    )


if __name__ == "__main__":
    main()
