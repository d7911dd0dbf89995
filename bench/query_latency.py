"""Catalog query latency on SQLite at 100k and 1M records (p50 / p95).

Fills a fresh SQLite store with N signed records whose task, model, hyperparameters and
metrics vary, then times a typical filter (task type, a metric bound, a parameter bound,
a LIKE on the model) through the same store code `catalog query` uses. Goal: p50 under
50 ms at 1M records.

    python bench/query_latency.py [--sizes 100000 1000000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.node.catalog import sign_record  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.store.query_filter import parse_filter, parse_order_by  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.helpers import make_record  # noqa: E402

FILTER = (
    "task.type = 'text-classification' and metrics.accuracy > 0.9 "
    "and params.learning_rate < 1e-4 and model.base LIKE 'bert%'"
)
TASKS = ["text-classification", "token-classification", "causal-lm", "summarization"]
BASES = ["bert-base-uncased", "roberta-base", "distilbert-base-uncased", "gpt2", "t5-small"]


def fill(home: NodeHome, url: str, n: int, start: int) -> None:
    store = open_store(url)
    rng = random.Random(start)
    batch = []
    for i in range(start, start + n):
        record = make_record(
            i,
            task_type=rng.choice(TASKS),
            accuracy=round(rng.uniform(0.4, 0.99), 4),
            learning_rate=10 ** rng.uniform(-6, -2),
            base=rng.choice(BASES),
        )
        batch.append(sign_record(home.identity, record))
        if len(batch) == 5000:
            store.add_records(batch)
            batch = []
    if batch:
        store.add_records(batch)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    home = NodeHome(Path(tempfile.mkdtemp(prefix="gp-bench-query-")) / "node")
    home.init("bench")
    url = home.db_url()
    where, order = parse_filter(FILTER), parse_order_by("metrics.accuracy desc")
    have = 0
    print(f"filter: {FILTER}  (limit {args.limit})")
    for size in sorted(args.sizes):
        t0 = time.perf_counter()
        fill(home, url, size - have, have)
        have = size
        fill_s = time.perf_counter() - t0
        store = open_store(url)
        for label, order_by in (("unordered", None), ("order by metrics.accuracy desc", order)):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                rows = store.query(where, limit=args.limit, order_by=order_by)
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(
                f"{size:>9} records ({label}): p50 {statistics.median(times):7.1f} ms  "
                f"p95 {p95:7.1f} ms  ({len(rows)} rows; filled in {fill_s:.0f} s)"
            )
        store.close()


if __name__ == "__main__":
    main()
