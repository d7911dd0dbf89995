"""Sync throughput over real gRPC on loopback, beside the raw Ed25519 verify rate.

Node A (a real `gridpoint node start` process) holds N signed records; node B pulls them
all with the same code `catalog sync` uses (verify every envelope, store idempotently).
Prints records/s verified and stored, the raw verify rate measured in the same run, and
their ratio (goal >= 0.50).

    python bench/sync_throughput.py [--records 20000] [--page-size 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.peers.grpc_transport import grpc_connector  # noqa: E402
from gridpoint.node.peers.sync import sync_peer  # noqa: E402
from gridpoint.node.peers.trust import add_peer  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.helpers import Daemon, signed_records  # noqa: E402


def raw_verify_rate(seconds: float = 2.0) -> float:
    key = Ed25519PrivateKey.generate()
    payload = b"x" * 700
    sig, public = key.sign(payload), key.public_key()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            public.verify(sig, payload)
        n += 200
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gp-bench-sync-"))
    a, b = NodeHome(work / "a"), NodeHome(work / "b")
    a.init("A")
    b.init("B")
    b.config_path.write_text(
        b.config_path.read_text().replace("page_size = 500", f"page_size = {args.page_size}")
    )
    store_a = open_store(a.db_url())
    for start in range(0, args.records, 5000):
        store_a.add_records(signed_records(a, min(5000, args.records - start), start))
    store_a.close()
    da, db = Daemon.start(a), Daemon.start(b)
    try:
        store_b = open_store(b.db_url())
        add_peer(a, open_store(a.db_url()), db.address, b.tls_fingerprint)
        add_peer(b, store_b, da.address, a.tls_fingerprint)
        peer = store_b.list_peers()[0]
        raw = raw_verify_rate()
        start = time.perf_counter()
        report = sync_peer(b, store_b, peer, grpc_connector(b))
        elapsed = time.perf_counter() - start
        assert report.error is None and report.new == args.records, report
        rate = report.new / elapsed
        print(
            f"records synced:            {report.new} in {elapsed:.1f} s (page size {args.page_size})"
        )
        print(f"sync throughput:           {rate:10.0f} records/s (verified and stored)")
        print(f"raw Ed25519 verify:        {raw:10.0f} /s")
        print(f"sync / raw verify:         {rate / raw:.2f}  (goal >= 0.50)")
        store_b.close()
    finally:
        da.kill()
        db.kill()


if __name__ == "__main__":
    main()
