"""The web UI's page times at 100k and 1M records (SQLite), side by side with another
version of gridpoint, and the UI process's memory.

Fills a fresh SQLite store with N signed records (as bench/query_latency.py does) and adds,
once, what the other pages show: a record with a 1,000-point curve, a study of 200 trials
(3 parameters, 20-point learning curves) with a warm-start report, a kept model with a
federated record and a derived one after it (lineage), a federation of 10 rounds and 3
members. Then starts a real `gridpoint ui` process per version and times complete page loads
over HTTP (server time to the whole HTML; charts are drawn by the browser from the figures
in the page, which load plotly.js once and then from its cache). Versions are timed in
turns, page by page, so both see the same machine. Memory: each UI process's resident set
after the pages and its peak (VmRSS, VmHWM from /proc).

    python bench/ui_pages.py [--sizes 100000 1000000] [--repeats 10] [--home DIR]
                             [--baseline DIR]

--baseline DIR: a checkout of another version (e.g. `git worktree add /tmp/before 68b9b59`)
whose `gridpoint ui` runs from DIR; a page it does not have shows as "-".
--home DIR: reuse a node home filled by an earlier run (fills only what is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.query_latency import fill  # noqa: E402
from gridpoint.node.catalog import publish  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.store.query_filter import Comparison  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from gridpoint.schema import CurvePoint  # noqa: E402
from tests.helpers import make_record  # noqa: E402

#: The pseudonyms that mark the records this bench adds besides the fill.
CURVE_STUDY = "benchcurve1000"
LINEAGE_STUDY = "benchlineage"
STUDY = "bench-study"
FEDERATION = "bench-fed"


def _memory(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss / 1024, peak / 1024


def _get(url: str) -> tuple[float, int] | None:
    """Milliseconds to the whole answer and its size; None for a page the version lacks."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=300) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return (time.perf_counter() - start) * 1000, len(body)


def _extras(home: NodeHome) -> dict[str, str]:
    """Adds (once) what the study, model, federation and record pages show; their paths."""
    import optuna

    from gridpoint.node.artifacts.store import ArtifactStore, NewArtifact
    from gridpoint.node.store.base import PrivateRun
    from gridpoint.node.ui.study_reports import save_report

    store = open_store(home.db_url())
    try:
        found = store.query(Comparison("study", "=", CURVE_STUDY), limit=1)
        if not found:
            curve = tuple(CurvePoint(10 * (k + 1), "accuracy", k / 1000) for k in range(1000))
            record = replace(make_record(0), curve=curve, study=CURVE_STUDY)
            found = [publish(store, home.identity, record)]
        long_id = found[0].id
        lineage = store.query(Comparison("study", "=", LINEAGE_STUDY), limit=3)
        artifacts = ArtifactStore(home, store)
        if not lineage:
            trial = publish(store, home.identity, replace(make_record(1), study=LINEAGE_STUDY))
            folder = Path(tempfile.mkdtemp(prefix="gp-bench-model-"))
            (folder / "config.json").write_text('{"model_type": "bert"}')
            (folder / "model.safetensors").write_bytes(os.urandom(1 << 20))
            artifacts.add(folder, NewArtifact("trial", trial.id, "", "full", STUDY, 0.9))
            fed = replace(
                make_record(2), kind="federated", study=LINEAGE_STUDY, parents=(trial.id,)
            )
            fed_id = publish(store, home.identity, fed).id
            derived = replace(make_record(3), study=LINEAGE_STUDY, parents=(fed_id,))
            publish(store, home.identity, derived)
            store.add_private_run(
                PrivateRun(STUDY, 0, json.dumps({"state": "complete"}), trial.id, datetime.now(UTC))
            )
            lineage = [trial]
        model_id = next(m.id for m in artifacts.list() if m.record_id == lineage[0].id)
        compare = store.query(None, limit=3)
    finally:
        store.close()
    storage = f"sqlite:///{home.path / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if STUDY not in optuna.get_all_study_names(storage):
        study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
        for k in range(200):
            trial = study.ask()
            lr = trial.suggest_float("learning_rate", 1e-6, 1e-3, log=True)
            batch = trial.suggest_int("batch_size", 8, 64)
            trial.suggest_categorical("optimizer", ["adamw", "sgd", "adafactor"])
            value = 0.9 - abs(lr - 1e-4) * 100 - batch / 1000 + (k % 7) / 100
            for step in range(1, 21):
                trial.report(value * step / 20, step * 50)
            study.tell(trial, value)
        save_report(
            home.path,
            STUDY,
            {
                "method": "rgpe",
                "priors": [
                    {
                        "prior": "p1",
                        "study": LINEAGE_STUDY,
                        "signer": home.identity.node_id,
                        "signer_name": "bench",
                        "trials": 1,
                        "similarity": 1.0,
                        "weight": 0.5,
                        "used": True,
                        "notes": [],
                    }
                ],
                "weights": {"p1": 0.4},
                "study_weight": 0.6,
                "prior_curves": 1,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    run = home.path / "fed" / FEDERATION / "run-001"
    if not run.exists():
        run.mkdir(parents=True)
        members = [home.identity.node_id, "1" * 40, "2" * 40]
        events = [{"event": "start", "rounds": 10}]
        events += [
            {
                "event": "round",
                "round": r,
                "accepted": members,
                "metrics": {"train_loss": 1 / r},
                "member_metrics": {
                    m: {"train_loss": 1 / r + i / 10} for i, m in enumerate(members)
                },
            }
            for r in range(1, 11)
        ]
        (run / "progress.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    name = urlencode({"name": STUDY})
    return {
        "record, 1,000-point curve": f"/record/{long_id}",
        "compare, 3 records": "/compare?" + urlencode([("id", s.id) for s in compare]),
        "study, 200 trials (6 charts)": f"/study?{name}",
        "study's importances (Optuna, cached)": f"/study/importance?{name}",
        "trial": f"/study/trial?{name}&number=0",
        "warm start": f"/study/warm-start?{name}",
        "model with its lineage": f"/model/{model_id}",
        "federation, 10 rounds x 3 members": f"/federation/{FEDERATION}/run-001",
    }


PAGES = {
    "catalog, first page": "/",
    "catalog, filtered, sorted by metrics.accuracy desc": "/?q=task.type+%3D+%27text-classification%27+and+metrics.accuracy+%3E+0.9&order=metrics.accuracy+desc&col=metrics.accuracy&col=params.learning_rate",
    "catalog, page 200 (offset 9,950)": "/?page=200",
}


def _start(home: NodeHome, source: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
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
        cwd=source,
        env=env,
    )
    assert ui.stdout is not None
    base = re.search(r"(http://\S+)/", ui.stdout.readline()).group(1)  # type: ignore[union-attr]
    return ui, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--home", type=Path, help="reuse the node home of an earlier run")
    parser.add_argument("--baseline", type=Path, help="another version's checkout, timed beside")
    args = parser.parse_args()
    home = NodeHome(args.home or Path(tempfile.mkdtemp(prefix="gp-bench-ui-")) / "node")
    if not home.identity_path.exists():
        home.init("bench")
    print(f"node home: {home.path}")
    url = home.db_url()
    store = open_store(url)
    have = store.count_records()
    store.close()
    versions = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    for size in sorted(args.sizes):
        t0 = time.perf_counter()
        if size > have:
            fill(home, url, size - have, have)
            have = size
        pages = {**PAGES, **_extras(home)}
        print(f"{size:>9} records (filled in {time.perf_counter() - t0:.0f} s)")
        started = {name: _start(home, source) for name, source in versions.items()}
        try:
            print(f"  {'page':<52}" + "".join(f" | {v:>34}" for v in versions))
            for label, path in pages.items():
                firsts = {name: _get(base + path) for name, (_, base) in started.items()}
                times: dict[str, list[float]] = {name: [] for name in firsts if firsts[name]}
                # The versions answer in turns, request by request: both see the same load.
                for _ in range(args.repeats):
                    for name in times:
                        answer = _get(started[name][1] + path)
                        assert answer is not None
                        times[name].append(answer[0])
                cells = []
                for name, first in firsts.items():
                    if first is None:
                        cells.append(f"{'-':>34}")
                        continue
                    ms = sorted(times[name])
                    p50, p95 = statistics.median(ms), ms[int(0.95 * (len(ms) - 1))]
                    cells.append(
                        f"{first[0]:7.0f} / {p50:6.1f} / {p95:6.1f} ms {first[1] // 1024:4d} KiB"
                    )
                print(f"  {label:<52}" + "".join(f" | {c}" for c in cells))
            print(f"  {'(first / p50 / p95, answer size)':<52}")
            for name, (ui, _) in started.items():
                rss, peak = _memory(ui.pid)
                print(
                    f"  UI process memory ({name}): {rss:.0f} MiB after the pages, peak {peak:.0f} MiB"
                )
        finally:
            for ui, _ in started.values():
                ui.terminate()
                ui.wait(10)


if __name__ == "__main__":
    main()
