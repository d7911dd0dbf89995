"""A misbehaving trusted peer, measured (issue 13): what is refused, what still arrives, what it costs.

1. Forged envelopes: N envelopes in 14 kinds of forgery or hostile content (tampered bytes,
   wrong keys, untrusted or future signers, values the store cannot hold, oversized records,
   ...) go through catalog.admit(); every one must be refused, by reason.
2. One bad peer + one honest peer, over real gRPC with mutual TLS: node C syncs from a real
   daemon B (honest) and from a crafted peer H that always has "more" pages full of refused
   records with 100 KB fields. Prints when B's records have all arrived, how H's round ended,
   and the log bytes written per MB of refused records.
3. The worst query under the caps: a real daemon holding records at the size limit answers
   the costliest filter the limits allow and an unfiltered query (cut at the message budget),
   one at a time and three in parallel; prints the daemon's CPU seconds and RSS growth.

    python bench/hostile_peer.py [--forged 10000] [--honest 2000]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]

With --pg (an admin URL), the syncing node and the queried daemon keep their stores in two
fresh PostgreSQL databases, dropped afterwards; without it, in SQLite files.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from gridpoint.errors import EnvelopeError  # noqa: E402
from gridpoint.node.catalog import admit, sign_record  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.logs import configure_logging  # noqa: E402
from gridpoint.node.peers.grpc_transport import grpc_connector  # noqa: E402
from gridpoint.node.peers.sync import sync_all  # noqa: E402
from gridpoint.node.protocol.envelope import MAX_FUTURE_S, now_ms, sign_envelope  # noqa: E402
from gridpoint.node.protocol.methods import QUERY  # noqa: E402
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request  # noqa: E402
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE, record_to_proto  # noqa: E402
from gridpoint.node.protocol.tls import tls_hostname  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from gridpoint.schema import CurvePoint  # noqa: E402
from gridpoint.v1 import catalog_pb2, envelope_pb2, records_pb2  # noqa: E402
from tests.helpers import (  # noqa: E402
    CraftedPeer,
    Daemon,
    crafted_envelope,
    make_record,
    pin,
    signed_records,
    worst_filter,
)


def forgeries(home: NodeHome, stranger: NodeHome) -> list[envelope_pb2.SignedEnvelope]:
    """One envelope of each kind of forgery or hostile content."""

    def edit(change: str) -> envelope_pb2.SignedEnvelope:
        def mutate(m: records_pb2.RunRecord) -> None:
            match change:
                case "bigint":
                    m.model.num_parameters = 2**63
                case "status":
                    m.status = 99
                case "nan-bounds":
                    m.search_space.add(
                        name="x", kind="categorical", low=float("nan"), choices=["a"]
                    )
                case "duplicate-names":
                    m.metrics.add(name="accuracy", value=0.1)
                case "long-curve":
                    for i in range(10_001):
                        m.curve.add(step=1000 + i, metric="l", value=0.5)
                case "oversized":
                    for i in range(12_000):
                        m.curve.add(step=1000 + i, metric="m" + "x" * 20, value=0.5)

        return crafted_envelope(home, mutate=mutate)

    genuine = crafted_envelope(home)
    out = [edit(c) for c in ("bigint", "status", "nan-bounds", "duplicate-names", "long-curve")]
    out.append(edit("oversized"))
    tampered = envelope_pb2.SignedEnvelope()
    tampered.CopyFrom(genuine)
    tampered.payload = genuine.payload.replace(b"bert", b"bart")
    out.append(tampered)
    for field, value in (
        ("signature", bytes(64)),
        ("signer_public_key", stranger.identity.public_key),
        ("payload_type", "gridpoint.v1.NodeInfo"),
        ("nonce", b"short"),
    ):
        forged = envelope_pb2.SignedEnvelope()
        forged.CopyFrom(genuine)
        setattr(forged, field, value)
        out.append(forged)
    out.append(sign_envelope(stranger.identity, genuine.payload, RUN_RECORD_TYPE))
    ahead = now_ms() + int(MAX_FUTURE_S * 1000) + 60_000
    out.append(crafted_envelope(home, signed_at_ms=ahead))
    out.append(sign_envelope(home.identity, b"\xff\xff not a record", RUN_RECORD_TYPE))
    return out


def bench_forged(work: Path, n: int) -> None:
    home, stranger = NodeHome(work / "f"), NodeHome(work / "s")
    home.init("F")
    stranger.init("S")
    kinds = forgeries(home, stranger)
    trusted = {home.identity.node_id}.__contains__
    reasons: Counter[str] = Counter()
    admitted = 0
    start = time.perf_counter()
    for i in range(n):
        try:
            admit(kinds[i % len(kinds)], trusted)
            admitted += 1
        except EnvelopeError as exc:
            reasons[exc.reason] += 1
    elapsed = time.perf_counter() - start
    print(f"forged envelopes refused:  {sum(reasons.values())} / {n} ({len(kinds)} kinds), "
          f"{admitted} admitted, {elapsed / n * 1e6:.0f} us each")  # fmt: skip
    print(f"  by reason: {dict(sorted(reasons.items()))}")


def bench_sync(work: Path, honest_n: int, db_url: str | None) -> None:
    b, h, c = (NodeHome(work / name) for name in ("B", "H", "C"))
    for home in (b, h, c):
        home.init(home.path.name)
    store_b = open_store(b.db_url())
    store_b.add_records(signed_records(b, honest_n))
    pin(store_b, c, "127.0.0.1:9")
    store_b.close()

    def long_name(m: records_pb2.RunRecord) -> None:
        m.model.base = "x" * 100_000

    junk = [crafted_envelope(h, i, mutate=long_name) for i in range(10)]
    junk_bytes = sum(len(e.SerializeToString()) for e in junk)
    hostile = CraftedPeer(
        h,
        c,
        lambda cursor: catalog_pb2.SyncPage(
            envelopes=junk, next_cursor=str(int(cursor or 0) + 1), has_more=True
        ),
    )
    db = Daemon.start(b)
    url = db_url or c.db_url()
    store_c = open_store(url)
    pin(store_c, b, db.address)
    pin(store_c, h, hostile.address)
    configure_logging()
    handler = logging.getLogger("gridpoint").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    log = io.StringIO()
    handler.setStream(log)
    try:
        start = time.perf_counter()
        result: list[object] = []
        runner = threading.Thread(
            target=lambda: result.extend(sync_all(c, store_c, grpc_connector(c)))
        )
        runner.start()
        while store_c.count_records() < honest_n and runner.is_alive():
            time.sleep(0.05)
        honest_s = time.perf_counter() - start
        runner.join()
        total_s = time.perf_counter() - start
    finally:
        hostile.stop()
        db.kill()
    reports = {r.peer_id: r for r in result}  # type: ignore[attr-defined]
    rb, rh = reports[b.identity.node_id], reports[h.identity.node_id]
    arrived = store_c.count_records()
    store_c.close()
    refused_mb = rh.pages * junk_bytes / 1e6
    print(f"honest peer's records:     {arrived} / {honest_n} arrived in {honest_s:.1f} s "
          f"(its round: new {rb.new}, error {rb.error})")  # fmt: skip
    print(f"hostile peer's round:      {rh.pages} pages, {sum(rh.refused.values())} refused, "
          f"ended by {rh.stopped or rh.error!r} after {total_s:.1f} s")  # fmt: skip
    print(f"log written:               {len(log.getvalue())} bytes for {refused_mb:.0f} MB refused "
          f"= {len(log.getvalue()) / refused_mb:.1f} bytes per refused MB")  # fmt: skip


def _proc(pid: int) -> tuple[float, int, int]:
    """CPU seconds, current RSS and peak RSS (bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kb = {key: int(status[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}
    return cpu, kb["VmRSS"], kb["VmHWM"]


def bench_query(work: Path, db_url: str | None) -> None:
    a, b = NodeHome(work / "QA"), NodeHome(work / "QB")
    a.init("QA")
    b.init("QB")
    url = db_url or a.db_url()
    store = open_store(url)
    base = make_record(0, base="big-model")
    curve = tuple(CurvePoint(i, "accuracy", 0.5) for i in range(10_000))
    store.add_records(
        [
            sign_record(a.identity, type(base)(**{**base.__dict__, "curve": curve, "study": f"big{i:05d}"}))
            for i in range(40)
        ]
    )  # fmt: skip
    for start in range(0, 10_000, 2_000):
        store.add_records(signed_records(a, 2_000, start=100 + start))
    record_kb = len(record_to_proto(type(base)(**{**base.__dict__, "curve": curve})).SerializeToString()) / 1024  # fmt: skip
    pin(store, b, "127.0.0.1:9")
    store.close()
    da = Daemon.start(a, *(["--db", db_url] if db_url else []))
    credentials = grpc.ssl_channel_credentials(a.tls.cert_pem, b.tls.key_pem, b.tls.cert_pem)
    options = [
        ("grpc.ssl_target_name_override", tls_hostname(a.identity.node_id)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    try:
        with grpc.secure_channel(da.address, credentials, options=options) as channel:
            call = channel.unary_unary(QUERY, request_serializer=None, response_deserializer=None)

            def ask(text: str) -> int:
                body = catalog_pb2.QueryRequest(filter=text, limit=1000).SerializeToString()
                auth = sign_request(b.identity, QUERY, body)
                answer = call(body, metadata=[(AUTH_METADATA_KEY, auth)], timeout=120)
                return len(catalog_pb2.QueryResponse.FromString(answer).envelopes)

            ask("kind = 'trial'")  # warm the daemon up before measuring
            for label, text, parallel in (
                ("worst filter (no match)", worst_filter(), 1),
                ("worst filter x3 parallel", worst_filter(), 3),
                ("unfiltered, budget cut", "", 1),
                ("unfiltered x3 parallel", "", 3),
            ):
                cpu0, rss0, _ = _proc(da.process.pid)
                start = time.perf_counter()
                with ThreadPoolExecutor(max_workers=parallel) as pool:
                    counts = list(pool.map(ask, [text] * parallel))
                wall = time.perf_counter() - start
                cpu1, rss1, peak = _proc(da.process.pid)
                print(f"query {label:<24} {counts[0]:4d} records, {wall:5.2f} s wall, "
                      f"{cpu1 - cpu0:5.2f} s CPU, RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB "
                      f"(peak {peak / 2**20:.0f} MiB)")  # fmt: skip
    finally:
        da.kill()
    print(f"  (store: 40 records of {record_kb:.0f} KiB, 10000 ordinary; worst filter "
          f"{len(worst_filter())} chars)")  # fmt: skip


@contextmanager
def fresh_database(admin_url: str | None) -> Iterator[str | None]:
    """A new, empty PostgreSQL database (dropped afterwards), or None for SQLite."""
    if admin_url is None:
        yield None
        return
    import psycopg

    name = f"gp_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forged", type=int, default=10_000)
    parser.add_argument("--honest", type=int, default=2_000)
    parser.add_argument("--pg", help="PostgreSQL admin URL: stores in fresh databases there")
    args = parser.parse_args()
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    work = Path(tempfile.mkdtemp(prefix="gp-bench-hostile-"))
    print(f"backend: {'PostgreSQL' if args.pg else 'SQLite'}")
    bench_forged(work, args.forged)
    with fresh_database(args.pg) as url:
        bench_sync(work, args.honest, url)
    with fresh_database(args.pg) as url:
        bench_query(work, url)


if __name__ == "__main__":
    main()
