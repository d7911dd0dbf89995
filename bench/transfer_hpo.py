"""Warm-started tuning replayed on offline evaluations (leave one task out), every method public.

Follows the protocol of Salinas, Shen & Perrone (ICML 2020) on any CSV in their format
(`hp_*` columns, one `metric_*` objective, a `task` column; see
../shared/bench/transfer-hpo/README.md): for each task in turn, the other tasks' evaluations
are the peers' catalog, the held-out task's evaluated configurations are the candidates, and
inputs are min-max scaled over all tasks. A failed evaluation (missing objective) counts as the
task's worst.

One proposal rule for every method: each method proposes a point through its public interface
(bench/transfer_methods.py: Optuna samplers in a real Optuna study, ours being
`gridpoint.WarmStartSampler` as `gridpoint tune --warm-start` runs it; Syne Tune's schedulers
through suggest / on_trial_complete); the proposal is snapped to the nearest configuration of
the held-out task not evaluated yet, and the method is told that configuration and its value.

Prints per method: normalized regret (ADTM, averaged over tasks and seeds) after 10 / 25 / 50 /
100 iterations (HPO-B's figure), the average rank over tasks and iterations, the improvement
over random search (the paper's Table 2 score: mean over tasks and iterations of
(ADTM_RS - ADTM) / ADTM_RS) beside the paper's published scores, and for each method the first
iteration whose regret is at or below cold TPE's at the last iteration. Then, for each method
beside cold TPE, the difference of their regrets at 25 and 100 iterations with a 95% paired
bootstrap interval over the (task, seed) studies: an interval that holds 0 is no difference.

Variants of the priors:
- `--unrelated OTHER.csv.zip`: the priors are the other blackbox's tasks, laid on this one's
  inputs by column position (the negative-transfer check);
- `--cross-space`: each prior task renames some parameters (learning_rate_log -> lr_log,
  num_layers -> n_layers, ...), does not publish one parameter at all, and searched a narrower
  range of another (only its trials inside it are kept, and it declares that range): the
  priors-across-search-spaces check.
- `--release-epsilon 1 4 8`: beside each warm method on the exact priors, the same method on
  priors whose values were released as a private study publishes them (`[privacy] protect =
  "evaluation"`): each prior study's values once, at that epsilon for the whole study (delta
  1e-5), by the product's Gaussian mechanism (trainers/privacy/release.py, noise calibrated by
  dp-accounting for one release per trial, sensitivity 1 / --eval-rows), and the prior marked
  with that noise as the catalog would mark it. Needs a rate objective (an error or an
  accuracy, in [0, 1]). The noise is fresh entropy, as a node's: not reproducible by seed.
  `--prior-trials N` keeps N random configurations of each prior study (exact and released
  alike): the number of trials it published, which sets how far the budget is split.

    python bench/transfer_hpo.py --data XGBoost.csv.zip --objective metric_error [--seeds 30]
        [--iterations 100] [--methods random,tpe,ours] [--optunahub-registry DIR] [--json]
        [--release-epsilon 1 4 8 --eval-rows 1000 --prior-trials 100]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

# One BLAS/torch thread per worker process: the pool already uses every core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_methods import METHODS, PriorTask, Setting  # noqa: E402

from gridpoint.trainers.privacy.accounting import release_noise  # noqa: E402
from gridpoint.trainers.privacy.release import EvaluationRelease  # noqa: E402
from gridpoint.trainers.privacy.spec import PrivacySpec  # noqa: E402

DEFAULT_METHODS = ("random", "tpe", "ours-cold", "ours")
CHECKPOINTS = (10, 25, 50, 100)
#: The paper's Table 2 (from its source repository), by blackbox, for the methods it lists.
PUBLISHED = {
    "DeepAR": {"CTS (paper)": 0.378, "GCP+prior (paper)": 0.734},
    "XGBoost": {"CTS (paper)": 0.015, "GCP+prior (paper)": 0.372},
}
#: How a prior study of the cross-space variant names a parameter differently (each a real
#: naming habit); parameters not listed keep their name.
ALIASES = {
    "learning_rate_log": "lr_log",
    "num_layers": "n_layers",
    "num_cells": "NumCells",
    "dropout_rate_log": "dropout-rate-log",
    "eta": "ETA",
    "max_depth_index": "maxDepthIndex",
    "subsample": "sub_sample",
    "log2_lambda": "log2-lambda",
}


@dataclass(frozen=True)
class Task:
    name: str
    x: np.ndarray  # configurations, min-max scaled over all tasks
    y: np.ndarray  # objective, lower is better, failures set to the task's worst


def load_tasks(
    path: Path, objective: str, maximize: bool, exclude: list[str]
) -> tuple[str, tuple[str, ...], list[Task]]:
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
    return blackbox, tuple(c.removeprefix("hp_") for c in hp), tasks


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


def cross_space(prior: PriorTask, position: int) -> PriorTask:
    """The prior as another organization would have published it (see the module docstring).

    Prior number `position` leaves out parameter `position` (mod d) and searched only the upper
    three quarters of parameter `position + 1`.
    """
    d = len(prior.names)
    dropped, narrowed = position % d, (position + 1) % d
    keep = [j for j in range(d) if j != dropped]
    inside = prior.x[:, narrowed] >= 0.25
    low = tuple(0.25 if j == narrowed else 0.0 for j in keep)
    return PriorTask(
        prior.label,
        tuple(ALIASES.get(prior.names[j], prior.names[j]) for j in keep),
        prior.x[inside][:, keep],
        prior.y[inside],
        low=low,
        high=(1.0,) * len(keep),
    )


#: The delta of a released prior study.
RELEASE_DELTA = 1e-5
#: How a method run on released priors is named: METHOD@epsE.
RELEASED = "@eps"


def subsample(task: Task, trials: int, position: int) -> Task:
    """The task with `trials` of its configurations, drawn once (the trials a study published)."""
    if not trials or trials >= len(task.y):
        return task
    keep = np.sort(np.random.default_rng(position).choice(len(task.y), trials, replace=False))
    return Task(task.name, task.x[keep], task.y[keep])


def released(prior: PriorTask, epsilon: float, eval_rows: int, maximize: bool) -> PriorTask:
    """The prior as a private study publishes it: every trial's value released once, the
    study's epsilon split over its trials (see the module docstring)."""
    spec = PrivacySpec(epsilon=epsilon, delta=RELEASE_DELTA, protect="evaluation")
    sigma = release_noise(epsilon, RELEASE_DELTA, len(prior.y), spec.accountant)
    release = EvaluationRelease(spec, sigma, eval_rows)
    # The values are rates (lower is better): an error is released as its accuracy, 1 - error.
    accuracy = -prior.y if maximize else 1.0 - prior.y
    out = np.array([release({"accuracy": float(a)})["accuracy"] for a in accuracy])
    return replace(
        prior,
        y=-out if maximize else 1.0 - out,
        noise=sigma * release.sensitivity("accuracy"),
        epsilon=epsilon,
        delta=RELEASE_DELTA,
    )


def split_method(key: str) -> tuple[str, float | None]:
    """(method, epsilon of its priors' release, None for exact priors) of a method key."""
    method, _, epsilon = key.partition(RELEASED)
    return method, float(epsilon) if epsilon else None


# Filled in the parent before the workers fork.
TASKS: list[Task] = []
PRIORS: dict[int, list[PriorTask]] = {}
#: By release epsilon: the priors of each held-out task, released.
RELEASED_PRIORS: dict[float, dict[int, list[PriorTask]]] = {}
NAMES: tuple[str, ...] = ()
REGISTRY: list[Path | None] = [None]
FIRST_SEED = [0]


def prepare(
    tasks: list[Task],
    names: tuple[str, ...],
    unrelated: list[Task] | None,
    cross: bool,
    registry: Path | None,
    release: tuple[list[float], int, bool] = ([], 1000, False),
    prior_trials: int = 0,
) -> None:
    """The held-out tasks and, for each, its prior tasks as the methods receive them: exact,
    and released at each epsilon of release (epsilons, evaluation rows, maximize)."""
    global NAMES
    TASKS[:] = tasks
    NAMES = names
    REGISTRY[0] = registry
    sources = [
        PriorTask(t.name, names, t.x, t.y)
        for k, t in enumerate(tasks if unrelated is None else unrelated)
        for t in [subsample(t, prior_trials, k)]
    ]
    epsilons, eval_rows, maximize = release
    # Each prior study is published once: every held-out task sees the same released values.
    variants = {None: sources} | {
        e: [released(p, e, eval_rows, maximize) for p in sources] for e in epsilons
    }
    for epsilon, published in variants.items():
        for i in range(len(tasks)):
            priors = [p for j, p in enumerate(published) if unrelated is not None or j != i]
            if cross:
                priors = [cross_space(p, k) for k, p in enumerate(priors)]
            (PRIORS if epsilon is None else RELEASED_PRIORS.setdefault(epsilon, {}))[i] = priors


def run_one(job: tuple[str, int, int, int]) -> tuple[str, int, int, np.ndarray, float]:
    """One method on one held-out task with one seed: the best value after each iteration."""
    method, task_index, seed, iterations = job
    task = TASKS[task_index]
    base, epsilon = split_method(method)
    priors = PRIORS if epsilon is None else RELEASED_PRIORS[epsilon]
    started = time.process_time()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # Syne Tune prints timings and boxes; a method's warnings are its own business here.
        warnings.simplefilter("ignore")
        searcher = METHODS[base].build(
            Setting(NAMES, priors[task_index], seed + FIRST_SEED[0], optunahub_registry=REGISTRY[0])
        )
        evaluated = np.zeros(len(task.y), dtype=bool)
        chosen: list[int] = []
        for _ in range(min(iterations, len(task.y))):
            point = np.clip(np.nan_to_num(searcher.ask(), nan=0.5), 0.0, 1.0)
            index = _nearest_unevaluated(task, point, evaluated)
            evaluated[index] = True
            chosen.append(index)
            searcher.tell(task.x[index], float(task.y[index]))
    best = np.minimum.accumulate(task.y[np.array(chosen)])
    return method, task_index, seed, best, time.process_time() - started


def _read_log(
    path: Path | None,
    methods: list[str],
    tasks: int,
    seeds: tuple[int, int],
    iterations: int,
    record: Callable[[str, int, int, np.ndarray, float], None],
) -> set[tuple[str, int, int]]:
    """The studies a previous run of the same command logged, passed to record().

    seeds is (first seed, number of seeds); the keys returned count seeds from the first.
    """
    done: set[tuple[str, int, int]] = set()
    if path is None or not path.exists():
        return done
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        key = (entry["method"], entry["task"], entry["seed"] - seeds[0])
        if key[0] in methods and key[1] < tasks and 0 <= key[2] < seeds[1] and key not in done:
            best = np.array(entry["best"], dtype=float)[:iterations]
            record(*key, best, float(entry["cpu"]))
            done.add(key)
    return done


def _nearest_unevaluated(task: Task, point: np.ndarray, evaluated: np.ndarray) -> int:
    distance = np.sum((task.x - point) ** 2, axis=1)
    distance[evaluated] = np.inf
    return int(np.argmin(distance))


def normalized_regret(tasks: list[Task], curve: np.ndarray) -> np.ndarray:
    """Best-so-far values (tasks × seeds × iterations) as each task's normalized regret:
    0 at its best configuration, 1 at its worst (HPO-B's ADTM before averaging)."""
    low = np.array([t.y.min() for t in tasks])[:, None, None]
    span = np.array([max(t.y.max() - t.y.min(), 1e-12) for t in tasks])[:, None, None]
    return np.asarray((curve - low) / span)


def summarize(
    tasks: list[Task], curves: dict[str, np.ndarray], iterations: int
) -> dict[str, dict[str, object]]:
    """curves[method] is tasks × seeds × iterations of best-so-far objective values."""
    adtm = {m: normalized_regret(tasks, c).mean(axis=1) for m, c in curves.items()}
    baseline = adtm.get("random")
    names = list(adtm)
    stacked = np.stack([adtm[m] for m in names])  # methods × tasks × iterations
    ranks = np.apply_along_axis(lambda v: pd.Series(v).rank().to_numpy(), 0, stacked).mean(
        axis=(1, 2)
    )
    out: dict[str, dict[str, object]] = {}
    for position, method in enumerate(names):
        score = float("nan")
        if baseline is not None:
            safe = np.where(baseline > 0, baseline, 1.0)
            score = float(np.where(baseline > 0, (baseline - adtm[method]) / safe, 0.0).mean())
        regret = {
            str(t): float(adtm[method][:, t - 1].mean()) for t in CHECKPOINTS if t <= iterations
        }
        base, epsilon = split_method(method)
        label = METHODS[base].label
        if epsilon is not None:
            label += f", priors released at epsilon {epsilon:g}"
        row: dict[str, object] = {
            "label": label,
            "warm_start": METHODS[base].warm,
            "score": score,
            "rank": float(ranks[position]),
            "regret": regret,
        }
        if "tpe" in adtm:
            # The first iteration whose mean regret is at or below cold TPE's final one.
            reached = np.flatnonzero(adtm[method].mean(axis=0) <= adtm["tpe"].mean(axis=0)[-1])
            row["reaches_cold_tpe_final_at"] = int(reached[0]) + 1 if reached.size else None
        out[method] = row
    return out


def paired_difference(
    tasks: list[Task],
    curves: dict[str, np.ndarray],
    method: str,
    baseline: str,
    iteration: int,
    draws: int = 2000,
) -> tuple[float, float, float]:
    """Mean of method's minus baseline's normalized regret after `iteration`, and its 95%
    bootstrap interval: the (task, seed) studies resampled with replacement, both methods'
    studies of a pair kept together (they share the held-out task and the seed)."""
    pairs = (
        normalized_regret(tasks, curves[method])[:, :, iteration - 1]
        - normalized_regret(tasks, curves[baseline])[:, :, iteration - 1]
    ).ravel()
    # A fixed generator: the interval of a given log is the same on every run.
    rng = np.random.default_rng(0)
    means = pairs[rng.integers(0, pairs.size, size=(draws, pairs.size))].mean(axis=1)
    low_q, high_q = np.quantile(means, [0.025, 0.975])
    return float(pairs.mean()), float(low_q), float(high_q)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="methods: " + ", ".join(f"{m.name} ({m.label})" for m in METHODS.values()),
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="CSV (or .csv.zip) of offline evaluations"
    )
    parser.add_argument("--objective", required=True, help="objective column, e.g. metric_error")
    parser.add_argument("--maximize", action="store_true", help="the objective is to be maximized")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="run seeds FIRST .. FIRST+SEEDS-1 (to add seeds to an earlier run's)",
    )
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma-separated (random is always added: the score is relative to it)",
    )
    parser.add_argument(
        "--tasks", type=int, default=0, help="only the first N held-out tasks (0: all)"
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
    parser.add_argument(
        "--cross-space",
        action="store_true",
        help="priors rename, leave out and narrow parameters (see above)",
    )
    parser.add_argument(
        "--optunahub-registry",
        type=Path,
        help="local copy of the optuna/optunahub-registry repository's package/ folder "
        "(for metalearn-tpe; fetched beforehand, never at run time)",
    )
    parser.add_argument(
        "--release-epsilon",
        type=float,
        nargs="+",
        default=[],
        help="also run each warm method on priors released at these per-study epsilons",
    )
    parser.add_argument(
        "--eval-rows", type=int, default=1000, help="a released prior's evaluation set size"
    )
    parser.add_argument(
        "--prior-trials", type=int, default=0, help="configurations per prior study (0: all)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--log",
        type=Path,
        help="JSON lines file: each finished study is appended as it ends, studies already "
        "in it are not run again (resume), and the figures cover the seeds that every method "
        "finished on every task (so a run stopped early still reports its complete seeds)",
    )
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if "random" not in methods:
        methods.insert(0, "random")
    methods += [
        f"{m}{RELEASED}{e:g}" for e in args.release_epsilon for m in methods if METHODS[m].warm
    ]
    exclude = args.exclude_task if args.exclude_task is not None else ["wiki-rolling"]
    blackbox, names, tasks = load_tasks(args.data, args.objective, args.maximize, exclude)
    unrelated = None
    if args.unrelated:
        _, _, other = load_tasks(
            args.unrelated, args.unrelated_objective or args.objective, False, exclude
        )
        rng = np.random.default_rng(0)
        unrelated = [Task(t.name, _lay_on(t.x, len(names), rng), t.y) for t in other]
    held_out = tasks[: args.tasks] if args.tasks else tasks
    started = time.perf_counter()
    if args.release_epsilon:
        rates = (-t.y if args.maximize else t.y for t in (unrelated or tasks))
        if not all(((y >= 0.0) & (y <= 1.0)).all() for y in rates):
            raise SystemExit(
                "--release-epsilon needs a rate objective (an error or an accuracy, in [0, 1]): "
                "its sensitivity to one evaluation row is 1 / --eval-rows"
            )
    prepare(
        tasks, names, unrelated, args.cross_space, args.optunahub_registry,
        (args.release_epsilon, args.eval_rows, args.maximize), args.prior_trials,
    )  # fmt: skip
    curves = {m: np.full((len(held_out), args.seeds, args.iterations), np.nan) for m in methods}
    cpu = dict.fromkeys(methods, 0.0)
    studies = dict.fromkeys(methods, 0)

    def record(method: str, t: int, s: int, best: np.ndarray, seconds: float) -> None:
        padded = np.concatenate([best, np.full(args.iterations - len(best), best[-1])])
        curves[method][t, s] = padded
        cpu[method] += seconds
        studies[method] += 1

    FIRST_SEED[0] = args.first_seed
    done = _read_log(
        args.log, methods, len(held_out), (args.first_seed, args.seeds), args.iterations, record
    )
    # Seed by seed (a stopped run keeps whole seeds), slow methods first within a seed so the
    # pool's tail is short.
    jobs = sorted(
        (
            (m, t, s, args.iterations)
            for s in range(args.seeds)
            for m in methods
            for t in range(len(held_out))
            if (m, t, s) not in done
        ),
        key=lambda j: (j[2], j[0] in ("random", "tpe")),
    )
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers) as pool:
        for method, t, s, best, seconds in pool.imap_unordered(run_one, jobs, chunksize=1):
            record(method, t, s, best, seconds)
            if args.log:
                with args.log.open("a") as log:
                    entry = {"method": method, "task": t, "seed": s + args.first_seed}
                    entry["cpu"] = seconds
                    log.write(json.dumps(entry | {"best": best.tolist()}) + "\n")
    elapsed = time.perf_counter() - started
    complete = [
        s for s in range(args.seeds) if all(np.isfinite(c[:, s]).all() for c in curves.values())
    ]
    seeds = len(complete)
    if not seeds:
        raise SystemExit("no seed finished for every method and task")
    curves = {m: c[:, complete] for m, c in curves.items()}
    results = summarize(held_out, curves, args.iterations)
    if "tpe" in curves:
        for method, row in results.items():
            row["minus_tpe"] = {
                str(t): paired_difference(held_out, curves, method, "tpe", t)
                for t in (25, args.iterations)
                if method != "tpe" and t <= args.iterations
            }
    for method, row in results.items():
        row["cpu_seconds_per_study"] = round(cpu[method] / max(studies[method], 1), 2)
    priors = (
        f"from {args.unrelated.name} (unrelated)"
        if args.unrelated
        else "leave-one-task-out" + (", across search spaces" if args.cross_space else "")
    )
    if args.prior_trials:
        priors += f", {args.prior_trials} configurations per prior study"
    if args.json:
        print(
            json.dumps(
                {
                    "blackbox": blackbox,
                    "tasks": len(held_out),
                    "seeds": seeds,
                    "iterations": args.iterations,
                    "priors": priors,
                    "seconds": round(elapsed, 1),
                    "methods": results,
                    "published": PUBLISHED.get(blackbox, {}),
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{blackbox}: {len(held_out)} tasks, {seeds} seeds, {args.iterations} iterations, "
        f"priors {priors}; {elapsed:.0f} s on {args.workers} worker(s)"
    )
    _print_table(results, args.iterations, blackbox)
    _print_differences(results, seeds * len(held_out))
    return 0


def _print_differences(results: dict[str, dict[str, object]], studies: int) -> None:
    rows: list[tuple[object, dict[str, tuple[float, float, float]]]] = [
        (row["label"], diff)
        for row in results.values()
        if isinstance(diff := row.get("minus_tpe"), dict) and diff
    ]
    if not rows:
        return
    print(f"\nregret minus cold TPE's, mean and 95% paired bootstrap interval ({studies} studies):")
    for label, diff in rows:
        cells = [f"@{t}: {m:+.2e} [{lo:+.2e}, {hi:+.2e}]" for t, (m, lo, hi) in diff.items()]
        print(f"- {label}: " + "; ".join(cells))


def _print_table(results: dict[str, dict[str, object]], iterations: int, blackbox: str) -> None:
    checkpoints = [str(t) for t in CHECKPOINTS if t <= iterations]
    print(
        "| method | warm | "
        + " | ".join(f"@{c}" for c in checkpoints)
        + " | rank | score | reaches TPE@100 at | CPU s/study |"
    )
    print("|---|---|" + "---|" * (len(checkpoints) + 4))
    for row in results.values():
        regret = row["regret"]
        assert isinstance(regret, dict)
        reached = row.get("reaches_cold_tpe_final_at")
        print(
            f"| {row['label']} | {'yes' if row['warm_start'] else 'no'} | "
            + " | ".join(f"{regret[c]:.2e}" for c in checkpoints)
            + f" | {row['rank']:.2f} | {row['score']:.3f} | "
            + f"{reached if reached else 'never'} | {row['cpu_seconds_per_study']} |"
        )
    for name, score in PUBLISHED.get(blackbox, {}).items():
        print(f"| {name} | yes | " + " | " * len(checkpoints) + f" | {score:.3f} | | |")


if __name__ == "__main__":
    raise SystemExit(main())
