"""Warm-started tuning replayed on offline evaluations (leave one task out).

Follows the protocol of Salinas, Shen & Perrone (ICML 2020) on any CSV in their format
(`hp_*` columns, one `metric_*` objective, a `task` column; see
../shared/bench/transfer-hpo/README.md): for each task in turn, the other tasks' evaluations
are the peers' catalog, the held-out task's evaluated configurations are the candidates, and
inputs are min-max scaled over all tasks. Every method proposes a point; the nearest
candidate not yet evaluated is "evaluated" (a table look-up). A failed evaluation (missing
objective) counts as the task's worst.

Prints per method: the improvement over random search (the paper's Table 2 score: mean over
tasks and iterations of (ADTM_RS - ADTM) / ADTM_RS), the average rank, and the normalized
regret (ADTM, averaged over tasks and seeds) after 10/25/50/100 iterations, beside the
paper's published scores. Methods:

- random: random search over the candidates.
- tpe: cold-start TPE (Optuna, multivariate), its proposals snapped to candidates.
- gp: cold-start GP with expected improvement: the rgpe machinery with no priors.
- design+tpe: initial-design transfer (trainers/transfer/initial_design.py): the best
  configuration of every prior task first, then the same TPE, told about the design.
- rgpe: the ranking-weighted ensemble (trainers/transfer/ensemble.py) for the whole study.

`--unrelated OTHER.csv.zip` takes the priors from another blackbox instead (its inputs laid on
this one's by column position): the negative-transfer check.

    python bench/transfer_hpo.py --data XGBoost.csv.zip --objective metric_error [--seeds 30]
        [--iterations 100] [--methods random,tpe,design+tpe,rgpe] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# One BLAS thread per worker process: the pool already uses every core, and oversubscribed
# BLAS threads made this bench 2x slower on 2 cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.trainers.transfer.copula import gaussian_copula  # noqa: E402
from gridpoint.trainers.transfer.ensemble import RankWeightedEnsemble  # noqa: E402
from gridpoint.trainers.transfer.initial_design import initial_design  # noqa: E402
from gridpoint.trainers.transfer.surrogate import PriorSurface  # noqa: E402

METHODS = ("random", "tpe", "gp", "design+tpe", "rgpe")
WARM = {"random": False, "tpe": False, "gp": False, "design+tpe": True, "rgpe": True}
CHECKPOINTS = (10, 25, 50, 100)
#: The paper's Table 2 (from its source repository), by blackbox, for the methods it lists.
PUBLISHED = {
    "DeepAR": {"CTS (paper)": 0.378, "GCP+prior (paper)": 0.734},
    "XGBoost": {"CTS (paper)": 0.015, "GCP+prior (paper)": 0.372},
}


@dataclass(frozen=True)
class Task:
    name: str
    x: np.ndarray  # configurations, min-max scaled over all tasks
    y: np.ndarray  # objective, lower is better, failures set to the task's worst


def load_tasks(
    path: Path, objective: str, maximize: bool, exclude: list[str]
) -> tuple[str, list[Task]]:
    frame = pd.read_csv(path)
    if objective not in frame.columns:
        raise SystemExit(f"{path}: no column {objective!r} (has {', '.join(frame.columns)})")
    if "task" not in frame.columns:
        raise SystemExit(f"{path}: no `task` column")
    frame = frame[~frame["task"].isin(exclude)]
    hp = [c for c in frame.columns if c.startswith("hp_")]
    if not hp:
        raise SystemExit(f"{path}: no hp_* columns")
    x = np.column_stack([_numeric(frame[c]) for c in hp])
    low, high = x.min(axis=0), x.max(axis=0)
    x = (x - low) / np.where(high > low, high - low, 1.0)
    y = frame[objective].to_numpy(dtype=float) * (-1.0 if maximize else 1.0)
    blackbox = str(frame["blackbox"].iloc[0]) if "blackbox" in frame.columns else path.stem
    tasks = []
    for name in sorted(frame["task"].unique()):
        mask = (frame["task"] == name).to_numpy()
        task_y = y[mask]
        worst = np.nanmax(task_y) if np.isfinite(task_y).any() else 0.0
        tasks.append(Task(str(name), x[mask], np.where(np.isfinite(task_y), task_y, worst)))
    return blackbox, tasks


def _numeric(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=float)
    # Categorical hyperparameters: ordinal codes in sorted order.
    return column.astype("category").cat.codes.to_numpy(dtype=float)


def _lay_on(x: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Another blackbox's inputs on this one's cube: by position, missing axes at random."""
    if x.shape[1] >= dim:
        return x[:, :dim]
    return np.hstack([x, rng.random((len(x), dim - x.shape[1]))])


# Filled in the parent before the workers fork: the tasks and each prior surface's means
# at every held-out task's candidates (prior surfaces never change, so this is done once).
TASKS: list[Task] = []
PRIOR_MEANS: dict[int, np.ndarray] = {}
PRIOR_BESTS: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}


def prepare(tasks: list[Task], priors: list[Task] | None) -> None:
    """Fits one surface per prior task and evaluates it on every held-out task's candidates."""
    TASKS[:] = tasks
    related = priors is None
    sources = tasks if related else priors
    surfaces = [PriorSurface(t.x, gaussian_copula(t.y), seed=i) for i, t in enumerate(sources)]
    for i, task in enumerate(tasks):
        ids = [j for j in range(len(sources)) if not (related and j == i)]
        PRIOR_MEANS[i] = np.vstack([surfaces[j].mean(task.x) for j in ids])
        PRIOR_BESTS[i] = ([sources[j].x for j in ids], [gaussian_copula(sources[j].y) for j in ids])


def run_one(job: tuple[str, int, int, int]) -> tuple[str, int, int, np.ndarray]:
    method, task_index, seed, iterations = job
    task = TASKS[task_index]
    rng = np.random.default_rng(seed * 1000 + task_index)
    runner = {"random": _random, "tpe": _tpe, "gp": _gp, "design+tpe": _design_tpe, "rgpe": _rgpe}[
        method
    ]
    chosen = runner(task_index, task, rng, seed, min(iterations, len(task.y)))
    return method, task_index, seed, np.minimum.accumulate(task.y[chosen])


def _nearest_unevaluated(task: Task, point: np.ndarray, evaluated: np.ndarray) -> int:
    distance = np.sum((task.x - point) ** 2, axis=1)
    distance[evaluated] = np.inf
    return int(np.argmin(distance))


def _random(_i: int, task: Task, rng: np.random.Generator, _seed: int, n: int) -> np.ndarray:
    return rng.permutation(len(task.y))[:n]


def _tpe(
    i: int,
    task: Task,
    rng: np.random.Generator,
    seed: int,
    n: int,
    design: np.ndarray | None = None,
) -> np.ndarray:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = {
        f"x{d}": optuna.distributions.FloatDistribution(0.0, 1.0) for d in range(task.x.shape[1])
    }
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    evaluated = np.zeros(len(task.y), dtype=bool)
    chosen: list[int] = []
    for point in design if design is not None else []:
        if len(chosen) == n:
            break
        index = _nearest_unevaluated(task, point, evaluated)
        evaluated[index] = True
        chosen.append(index)
        params = {f"x{d}": float(v) for d, v in enumerate(task.x[index])}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dims, value=float(task.y[index]))
        )
    while len(chosen) < n:
        trial = study.ask(dims)
        point = np.array([trial.params[f"x{d}"] for d in range(task.x.shape[1])])
        index = _nearest_unevaluated(task, point, evaluated)
        evaluated[index] = True
        chosen.append(index)
        study.tell(trial, float(task.y[index]))
    return np.array(chosen)


def _design_tpe(i: int, task: Task, rng: np.random.Generator, seed: int, n: int) -> np.ndarray:
    points, scores = PRIOR_BESTS[i]
    design = initial_design(points, scores, count=len(points))
    return _tpe(i, task, rng, seed, n, design=design)


def _gp(i: int, task: Task, rng: np.random.Generator, seed: int, n: int) -> np.ndarray:
    return _rgpe(i, task, rng, seed, n, use_priors=False)


def _rgpe(
    i: int, task: Task, rng: np.random.Generator, seed: int, n: int, use_priors: bool = True
) -> np.ndarray:
    prior = PRIOR_MEANS[i] if use_priors else PRIOR_MEANS[i][:0]
    ensemble = RankWeightedEnsemble(task.x.shape[1], seed=seed)
    evaluated = np.zeros(len(task.y), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < n:
        open_ = np.flatnonzero(~evaluated)
        idx = np.array(chosen, dtype=int)
        step = ensemble.propose(
            task.x[open_], prior[:, open_], task.x[idx], task.y[idx], prior[:, idx]
        )
        index = int(open_[step.index])
        evaluated[index] = True
        chosen.append(index)
    return np.array(chosen)


def summarize(tasks: list[Task], curves: dict[str, np.ndarray], iterations: int) -> dict[str, dict]:
    """curves[method] is tasks × seeds × iterations of best-so-far objective values."""
    low = np.array([t.y.min() for t in tasks])[:, None, None]
    span = np.array([max(t.y.max() - t.y.min(), 1e-12) for t in tasks])[:, None, None]
    adtm = {m: ((c - low) / span).mean(axis=1) for m, c in curves.items()}  # tasks × iterations
    baseline = adtm.get("random")
    names = list(adtm)
    stacked = np.stack([adtm[m] for m in names])  # methods × tasks × iterations
    ranks = np.apply_along_axis(lambda v: pd.Series(v).rank().to_numpy(), 0, stacked).mean(
        axis=(1, 2)
    )
    out: dict[str, dict] = {}
    for position, method in enumerate(names):
        score = float("nan")
        if baseline is not None:
            safe = np.where(baseline > 0, baseline, 1.0)
            score = float(np.where(baseline > 0, (baseline - adtm[method]) / safe, 0.0).mean())
        regret = {
            str(t): float(adtm[method][:, t - 1].mean()) for t in CHECKPOINTS if t <= iterations
        }
        out[method] = {
            "score": score,
            "rank": float(ranks[position]),
            "regret": regret,
            "warm_start": WARM[method],
        }
        if "tpe" in adtm:
            # The first iteration whose mean regret is at or below cold TPE's final one.
            reached = np.flatnonzero(adtm[method].mean(axis=0) <= adtm["tpe"].mean(axis=0)[-1])
            out[method]["reaches_cold_tpe_final_at"] = int(reached[0]) + 1 if reached.size else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="CSV (or .csv.zip) of offline evaluations"
    )
    parser.add_argument("--objective", required=True, help="objective column, e.g. metric_error")
    parser.add_argument("--maximize", action="store_true", help="the objective is to be maximized")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}"
    )
    parser.add_argument(
        "--exclude-task",
        action="append",
        default=None,
        help="task to leave out (repeatable; default: wiki-rolling, as the data's README says)",
    )
    parser.add_argument("--unrelated", type=Path, help="take priors from this other blackbox's CSV")
    parser.add_argument(
        "--unrelated-objective", help="objective column of --unrelated (default: --objective)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if "random" not in methods:
        methods.insert(0, "random")  # the score is relative to it
    exclude = args.exclude_task if args.exclude_task is not None else ["wiki-rolling"]
    blackbox, tasks = load_tasks(args.data, args.objective, args.maximize, exclude)
    priors = None
    if args.unrelated:
        _, other = load_tasks(
            args.unrelated, args.unrelated_objective or args.objective, False, exclude
        )
        rng = np.random.default_rng(0)
        dim = tasks[0].x.shape[1]
        priors = [Task(t.name, _lay_on(t.x, dim, rng), t.y) for t in other]
    started = time.perf_counter()
    prepare(tasks, priors)
    jobs = [
        (m, t, s, args.iterations)
        for m in methods
        for t in range(len(tasks))
        for s in range(args.seeds)
    ]
    # Slow methods first so the pool's tail is short.
    jobs.sort(key=lambda j: j[0] == "random")
    curves = {m: np.full((len(tasks), args.seeds, args.iterations), np.nan) for m in methods}
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers) as pool:
        for method, t, s, best in pool.imap_unordered(run_one, jobs, chunksize=1):
            padded = np.concatenate([best, np.full(args.iterations - len(best), best[-1])])
            curves[method][t, s] = padded
    elapsed = time.perf_counter() - started
    results = summarize(tasks, curves, args.iterations)
    if args.json:
        print(
            json.dumps(
                {
                    "blackbox": blackbox,
                    "seeds": args.seeds,
                    "iterations": args.iterations,
                    "priors": "unrelated" if priors else "related",
                    "seconds": round(elapsed, 1),
                    "methods": results,
                    "published": PUBLISHED.get(blackbox, {}),
                },
                indent=2,
            )
        )
        return 0
    _print_table(blackbox, tasks, args, results, priors is not None, elapsed)
    return 0


def _print_table(
    blackbox: str,
    tasks: list[Task],
    args: argparse.Namespace,
    results: dict[str, dict],
    unrelated: bool,
    elapsed: float,
) -> None:
    checkpoints = [str(t) for t in CHECKPOINTS if t <= args.iterations]
    print(
        f"{blackbox}: {len(tasks)} tasks, {args.seeds} seeds, {args.iterations} iterations, "
        f"priors {'from ' + args.unrelated.name + ' (unrelated)' if unrelated else 'leave-one-task-out'}; "
        f"{elapsed:.0f} s on {args.workers} worker(s)"
    )
    header = f"{'method':<20} {'warm':>5} {'score':>7} {'rank':>6} " + " ".join(
        f"{'@' + c:>9}" for c in checkpoints
    )
    print(
        "score: improvement over random search (higher is better); @N: normalized regret after N iterations"
    )
    print(header)
    for method, row in results.items():
        cells = " ".join(f"{row['regret'][c]:>9.2e}" for c in checkpoints)
        print(
            f"{method:<20} {'yes' if row['warm_start'] else 'no':>5} {row['score']:>7.3f} {row['rank']:>6.2f} {cells}"
        )
    for name, score in PUBLISHED.get(blackbox, {}).items():
        print(f"{name:<20} {'yes':>5} {score:>7.3f}")
    for method, row in results.items():
        if row["warm_start"] and "reaches_cold_tpe_final_at" in row:
            at = row["reaches_cold_tpe_final_at"]
            print(
                f"{method}: reaches cold TPE's final regret at iteration {at if at else 'never (within the run)'}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
