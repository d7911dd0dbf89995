"""The web UI's page times at 100k and 1M records (SQLite), and the UI process's memory.

Fills a fresh SQLite store with N signed records (as bench/query_latency.py does), adds one
record with a 1,000-point curve, starts a real `gridpoint ui` process and times complete
page loads over HTTP (server time to the whole HTML, table or chart included; the page loads
nothing else but a stylesheet): the catalog's first page, a filtered page sorted by a metric,
a page deep in the answer, the record page with the 1,000-point curve. Memory: the UI
process's resident set (VmRSS) after the pages and its peak (VmHWM), from /proc.

    python bench/ui_pages.py [--sizes 100000 1000000] [--repeats 10] [--home DIR]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.query_latency import fill  # noqa: E402
from gridpoint.node.catalog import publish  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from gridpoint.schema import CurvePoint  # noqa: E402
from tests.helpers import make_record  # noqa: E402

PAGES = {
    "catalog, first page": "/",
    "catalog, filtered, sorted by metrics.accuracy desc": "/?q=task.type+%3D+%27text-classification%27+and+metrics.accuracy+%3E+0.9&order=metrics.accuracy+desc&col=metrics.accuracy&col=params.learning_rate",
    "catalog, page 200 (offset 9,950)": "/?page=200",
}


def _memory(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, peak / 1024


def _time(url: str, repeats: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeats):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as response:
            body = response.read()
        times.append((time.perf_counter() - start) * 1000)
        size = len(body)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--home",
        type=Path,
        help="reuse the node home of an earlier run (fills only what is missing)",
    )
    args = parser.parse_args()
    home = NodeHome(args.home or Path(tempfile.mkdtemp(prefix="gp-bench-ui-")) / "node")
    if not home.identity_path.exists():
        home.init("bench")
    print(f"node home: {home.path}")
    url = home.db_url()
    store = open_store(url)
    have = store.count_records()
    if have == 0:
        curve = tuple(CurvePoint(10 * (k + 1), "accuracy", k / 1000) for k in range(1000))
        publish(store, home.identity, replace(make_record(0), curve=curve))
        have = 1
    long_id = store.query(None, limit=1)[0].id
    store.close()
    pages = {**PAGES, "record, 1,000-point curve": f"/record/{long_id}"}
    for size in sorted(args.sizes):
        if size < have:
            continue
        t0 = time.perf_counter()
        fill(home, url, size - have, have)
        have = size
        print(f"{size:>9} records (filled in {time.perf_counter() - t0:.0f} s)")
        ui = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridpoint",
                "--home",
                str(home.path),
                "ui",
                "--listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert ui.stdout is not None
            base = re.search(r"(http://\S+)/", ui.stdout.readline()).group(1)  # type: ignore[union-attr]
            idle, _ = _memory(ui.pid)
            for label, path in pages.items():
                first, _, _ = _time(base + path, 1)
                p50, p95, body = _time(base + path, args.repeats)
                print(
                    f"  {label:<52} first {first:7.1f} ms  p50 {p50:7.1f} ms  "
                    f"p95 {p95:7.1f} ms  ({body // 1024} KiB)"
                )
            rss, peak = _memory(ui.pid)
            print(
                f"  UI process memory: {idle:.0f} MiB at start, {rss:.0f} MiB after, peak {peak:.0f} MiB"
            )
        finally:
            ui.terminate()
            ui.wait(10)


if __name__ == "__main__":
    main()
