"""What one warm start costs when a trusted peer has published a great deal: time and memory.

A peer's identity signs N trial records into a fresh SQLite store (S studies of the README's
task, each trial with a curve of P points; records are as large as their curves make them,
up to the 256 KiB a record may hold). Then what `tune --warm-start` does before its first
trial is timed, step by step, as node/tuning/warm_search.py runs it: choosing the prior
studies from the catalog (choose_priors, with this process's peak RSS before and after), the
transfer sampler's set-up, the curve pruner's, and three trials' proposals and pruning
checks (tiny-study's search space). Figures are printed, never asserted.

    python bench/warm_start_cost.py [--records 100000] [--studies 100] [--curve-points 3] \
        [--code DIR]

--code DIR measures another checkout's code (e.g. `git archive COMMIT | tar -x -C DIR`) on
the same kind of catalog, for a side-by-side figure; the catalog is built anew each run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--curve-points", type=int, default=3)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose code runs")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    import optuna

    from gridpoint.node.catalog import sign_record
    from gridpoint.node.home import NodeHome
    from gridpoint.node.store.sql_store import open_store
    from gridpoint.node.tuning import warm_start
    from gridpoint.node.tuning.warm_start import choose_priors
    from gridpoint.schema import BaseModelInfo, CurvePoint, RunRecord, TaskDescriptor
    from gridpoint.trainers.study_config import load_study_config
    from gridpoint.trainers.transfer.pruner import CurvePruner
    from gridpoint.trainers.transfer.sampler import WarmStartSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = TaskDescriptor("text-classification", 2, "1k-10k", language="en")
    config = load_study_config(ROOT / "examples" / "tiny-study.toml")
    with tempfile.TemporaryDirectory() as tmp:
        peer = NodeHome(Path(tmp) / "peer")
        peer.init("peer")
        store = open_store(f"sqlite:///{tmp}/catalog.db")
        started = time.perf_counter()
        batch = []
        for i in range(args.records):
            accuracy = 0.6 + (i % 7) / 40
            points = max(args.curve_points, 1)
            record = RunRecord(
                task=task,
                model=BaseModelInfo(base="bert-base-uncased", family="bert"),
                hyperparameters={
                    "learning_rate": 1e-4 * (1 + i % 40),
                    "batch_size": (16, 32)[i % 2],
                    "warmup_ratio": (i % 5) / 25,
                    "epochs": 4 + i % 5,
                },
                curve=tuple(
                    CurvePoint(10 * (k + 1), "accuracy", accuracy * (k + 1) / points)
                    for k in range(points)
                ),
                metrics={"accuracy": accuracy},
                study=f"benchstudy{i % args.studies:06d}",
                trial=f"trial{i:010d}",
                objective_metric="accuracy",
                objective_direction="maximize",
            )
            batch.append(sign_record(peer.identity, record))
            if len(batch) == 1000:
                store.add_records(batch)
                batch = []
        if batch:
            store.add_records(batch)
        print(
            f"catalog: {args.records} records in {args.studies} studies, {args.curve_points} "
            f"curve points each, signed and stored in {time.perf_counter() - started:.0f} s"
        )
        before = peak_mb()
        started = time.perf_counter()
        choice = choose_priors(store, task=task, objective_metric="accuracy")
        print(
            f"choose_priors: {time.perf_counter() - started:.2f} s, {len(choice.priors)} "
            f"priors, {sum(len(p.trials) for p in choice.priors)} trials; peak RSS "
            f"{before} -> {peak_mb()} MB"
        )
        started = time.perf_counter()
        # As warm_search.py builds it (code before the trials' cap had no such setting).
        cap = getattr(warm_start, "MAX_PRIOR_TRIALS", None)
        sampler = WarmStartSampler(
            choice.priors,
            config.search_space,
            method="rgpe",
            seed=0,
            **({"max_prior_trials": cap} if cap else {}),
        )
        print(f"sampler set-up: {time.perf_counter() - started:.2f} s")
        curves = [c for m in sampler.used for c in m.curves if c]
        started = time.perf_counter()
        pruner = CurvePruner(curves, n_warmup_steps=0)
        print(
            f"pruner set-up: {time.perf_counter() - started:.2f} s "
            f"({len(curves)} curves, {sum(map(len, curves))} points)"
        )
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        for n in range(3):
            started = time.perf_counter()
            trial = study.ask()
            for dim in config.search_space:
                if dim.kind == "float":
                    trial.suggest_float(dim.name, dim.low, dim.high, log=dim.log)
                elif dim.kind == "int":
                    trial.suggest_int(dim.name, int(dim.low), int(dim.high))
                else:
                    trial.suggest_categorical(dim.name, list(dim.choices))
            proposed = time.perf_counter() - started
            checks = []
            for step in (10, 20, 30):
                trial.report(0.99, step)
                started = time.perf_counter()
                trial.should_prune()
                checks.append(time.perf_counter() - started)
            study.tell(trial, 0.9)
            print(
                f"trial {n}: proposal {proposed:.2f} s, each pruning check "
                f"{max(checks):.3f} s at most"
            )
        store.close()
        print(f"peak RSS {peak_mb()} MB")


if __name__ == "__main__":
    main()
