"""The catalog on PostgreSQL at millions of records: query latency, and sync into it.

Makes a database of its own (dropped at the end), opens it with the store (migrations
applied), stores a few thousand genuinely signed records through the store, then fills up to
each --sizes count in bulk inside PostgreSQL (INSERT ... SELECT over generate_series: each new
row reuses one of the signed envelopes, with its own id and its own random task type, model,
learning rate and accuracy, so filters and orders select and sort as on real data; the
envelopes are not checked at query time; the plain indexes are built after the fill). At each
size, VACUUM ANALYZE, then the README's filters with their order (and without, and the
live-query one) through the same store code `catalog query` uses: p50 / p95 of --repeats.
Then sync: a real daemon serves --sync-records signed records; the same pull (verify every
envelope, store) into this big PostgreSQL store and into a fresh SQLite one, side by side,
--repeats-sync times each, alternating. Goals
(issue 29): p50 under 50 ms at 10M with an order; sync into PostgreSQL at least 0.5 of the
SQLite rate.

    python bench/postgres_scale.py [--sizes 1000000 3000000 10000000] \
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.node.catalog import sign_record  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.peers.grpc_transport import grpc_connector  # noqa: E402
from gridpoint.node.peers.sync import sync_peer  # noqa: E402
from gridpoint.node.peers.trust import add_peer  # noqa: E402
from gridpoint.node.store.query_filter import parse_filter, parse_order_by  # noqa: E402
from gridpoint.node.store.sql_filter import query_statements  # noqa: E402
from gridpoint.node.store.sql_rows import stored  # noqa: E402
from gridpoint.node.store.sql_store import SqlStore, open_store  # noqa: E402
from tests.helpers import Daemon, make_record, pin, signed_records  # noqa: E402

QUERIES = [
    (
        "README filter, order by metrics.accuracy desc",
        "task.type = 'text-classification' and metrics.accuracy > 0.8 "
        "and params.learning_rate < 1e-4 and model.base LIKE 'bert%'",
        "metrics.accuracy desc",
    ),
    (
        "README filter, unordered",
        "task.type = 'text-classification' and metrics.accuracy > 0.8 "
        "and params.learning_rate < 1e-4 and model.base LIKE 'bert%'",
        "",
    ),
    ("README live query (metrics.accuracy > 0.8)", "metrics.accuracy > 0.8", ""),
    ("kind = 'trial' order by metrics.accuracy desc", "kind = 'trial'", "metrics.accuracy desc"),
]
TASKS = ["text-classification", "token-classification", "causal-lm", "summarization"]
BASES = ["bert-base-uncased", "roberta-base", "distilbert-base-uncased", "gpt2", "t5-small"]
SIGNED = 2000


def seed(home: NodeHome, store: SqlStore) -> None:
    """SIGNED genuinely signed records, stored through the store."""
    rng = random.Random(0)
    store.add_records(
        [
            sign_record(
                home.identity,
                make_record(
                    i,
                    task_type=rng.choice(TASKS),
                    accuracy=round(rng.uniform(0.4, 0.99), 4),
                    learning_rate=10 ** rng.uniform(-6, -3),
                    base=rng.choice(BASES),
                ),
            )
            for i in range(SIGNED)
        ]
    )


def _pick(options: list[str], g: str) -> str:
    items = ",".join(f"'{o}'" for o in options)
    return f"(ARRAY[{items}])[1 + ({g}::bigint * 7919) % {len(options)}]"


def fill(conn: psycopg.Connection, start: int, stop: int) -> None:
    """Rows start+1..stop in bulk: records, then their parameters and metrics. The tables'
    plain indexes are dropped for the fill and built again after it (each as the migrations
    made it), then VACUUM ANALYZE, as autovacuum leaves a table that took many inserts."""
    tables = ("records", "record_params", "record_metrics")
    indexes = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        (list(tables),),
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    conn.commit()
    columns = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'records' ORDER BY ordinal_position"
        )
    ]
    override = {
        "seq": "g",
        "id": "md5(g::text) || md5('r' || g::text)",
        "task_type": _pick(TASKS, "g"),
        "model_base": _pick(BASES, "(g / 4)"),
        "received_at": "now()",
    }
    select = ", ".join(override.get(c, f"t.{c}") for c in columns)
    step = 500_000
    for lo in range(start + 1, stop + 1, step):
        hi = min(stop, lo + step - 1)
        conn.execute(
            f"INSERT INTO records ({', '.join(columns)}) SELECT {select} "
            f"FROM generate_series({lo}, {hi}) g "
            f"JOIN records t ON t.seq = 1 + g % {SIGNED}"
        )
        conn.execute(
            "INSERT INTO record_params (record_seq, name, num_value, str_value) "
            "SELECT g, p.name, CASE p.name WHEN 'learning_rate' THEN power(10, -6 + 3 * random()) "
            "WHEN 'batch_size' THEN 16 + (g % 3) * 16 WHEN 'seed' THEN g END, "
            "CASE p.name WHEN 'optimizer' THEN 'adamw' END "
            f"FROM generate_series({lo}, {hi}) g, "
            "(VALUES ('learning_rate'), ('batch_size'), ('optimizer'), ('seed')) p(name)"
        )
        conn.execute(
            "INSERT INTO record_metrics (record_seq, name, value) "
            "SELECT g, m.name, CASE m.name WHEN 'accuracy' THEN a ELSE 1 - a END "
            f"FROM (SELECT g, round((0.4 + 0.59 * random())::numeric, 4)::float AS a "
            f"FROM generate_series({lo}, {hi}) g) s, "
            "(VALUES ('accuracy'), ('eval_loss')) m(name)"
        )
        conn.commit()
        print(f"  filled to {hi:,}", flush=True)
    conn.execute("SET maintenance_work_mem = '1GB'")
    for _, definition in indexes:
        conn.execute(definition)
    conn.commit()
    conn.autocommit = True
    conn.execute(f"VACUUM ANALYZE {', '.join(tables)}")
    conn.autocommit = False


def one_statement_ms(store: SqlStore, text: str, order: str) -> float:
    """The ordered query as one statement (the metric's ranked walk joined with the filter,
    as the store ran it before MetricWalk): what the planner makes of it, for comparison."""
    stmt = query_statements(parse_filter(text), parse_order_by(order))[0]
    start = time.perf_counter()
    with store.reading() as conn:
        rows = conn.execute(stmt.limit(100)).scalars().all()
    [stored(envelope) for envelope in rows]  # as store.query() decodes what it answers
    return (time.perf_counter() - start) * 1000


def time_queries(store: SqlStore, repeats: int, old_repeats: int) -> None:
    for label, text, order in QUERIES:
        if order and old_repeats:
            old = sorted(one_statement_ms(store, text, order) for _ in range(old_repeats))
            print(f"  {label}, as one statement (before): p50 {statistics.median(old):9.1f} ms")
        where, order_by = parse_filter(text), parse_order_by(order)
        store.query(where, limit=100, order_by=order_by)  # warm
        times = []
        rows = []
        for _ in range(repeats):
            start = time.perf_counter()
            rows = store.query(where, limit=100, order_by=order_by)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        print(
            f"  {label}: p50 {statistics.median(times):7.1f} ms  "
            f"p95 {times[int(0.95 * (len(times) - 1))]:7.1f} ms  ({len(rows)} rows)",
            flush=True,
        )


def sync_rate(b: NodeHome, store: SqlStore, daemon: Daemon, a: NodeHome, records: int) -> float:
    """One full pull of the daemon's records into store (its peer row reset to the start)."""
    add_peer(b, store, daemon.address, a.tls_fingerprint)
    peer = next(p for p in store.list_peers() if p.node_id == a.identity.node_id)
    start = time.perf_counter()
    report = sync_peer(b, store, peer, grpc_connector(b))
    seconds = time.perf_counter() - start
    assert report.error is None and report.new == records, report
    return records / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sync-records", type=int, default=5000)
    parser.add_argument("--repeats-sync", type=int, default=3)
    parser.add_argument(
        "--old-repeats",
        type=int,
        default=1,
        help="times the ordered queries also run as one statement, as before (0: not)",
    )
    args = parser.parse_args()
    name = f"gp_bench_scale_{os.getpid()}"
    admin = psycopg.connect(args.pg, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    work = Path(tempfile.mkdtemp(prefix="gp-bench-pg-"))
    try:
        run(args, url, work)
    finally:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def run(args: argparse.Namespace, url: str, work: Path) -> None:
    b = NodeHome(work / "b")
    b.init("B")
    store = open_store(url)
    seed(b, store)
    have = SIGNED
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        for size in sorted(args.sizes):
            t0 = time.perf_counter()
            fill(conn, have, size)
            have = size
            print(f"{size:,} records (filled in {time.perf_counter() - t0:.0f} s):", flush=True)
            time_queries(store, args.repeats, args.old_repeats)
    if args.repeats_sync < 1:
        store.close()
        return
    # Sync: a daemon serves signed records; pulled into the big PostgreSQL store and into a
    # fresh SQLite store each time.
    a = NodeHome(work / "a")
    a.init("A")
    store_a = open_store(a.db_url())
    store_a.add_records(signed_records(a, args.sync_records, start=10_000_000))
    pin(store_a, b, "127.0.0.1:1")
    daemon = Daemon.start(a)
    pg_rates, lite_rates = [], []
    try:
        for i in range(args.repeats_sync):
            lite = open_store(f"sqlite:///{work / f'lite{i}.db'}")
            lite_rates.append(sync_rate(b, lite, daemon, a, args.sync_records))
            lite.close()
            with psycopg.connect(url) as conn:  # the pulled records go, the big store stays
                conn.execute("DELETE FROM records WHERE seq > %s", (have,))
                conn.execute("DELETE FROM record_sources")
                conn.execute("DELETE FROM peers WHERE node_id = %s", (a.identity.node_id,))
            pg_rates.append(sync_rate(b, store, daemon, a, args.sync_records))
            print(
                f"sync {args.sync_records} records: SQLite (fresh) {lite_rates[-1]:.0f}/s, "
                f"PostgreSQL ({have:,} held) {pg_rates[-1]:.0f}/s, "
                f"ratio {pg_rates[-1] / lite_rates[-1]:.2f}",
                flush=True,
            )
    finally:
        daemon.kill()
        store_a.close()
        store.close()
    ratio = statistics.median(p / s for p, s in zip(pg_rates, lite_rates, strict=True))
    print(f"sync into PostgreSQL / into SQLite: median {ratio:.2f} (goal >= 0.5)")


if __name__ == "__main__":
    main()
