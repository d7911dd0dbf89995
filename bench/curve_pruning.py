"""Curve-aware pruning on the LCBench surrogate: epochs saved against final regret.

For each of --tasks LCBench tasks (YAHPO Gym surrogate, 52 epochs, validation accuracy)
and each seed, the same random-search study of --trials configurations is replayed under
each pruner, epoch by epoch; a pruned trial stops consuming epochs. Reported per pruner:
the epochs used (share of running every trial to the end) and the final regret (best final
validation accuracy without pruning minus the best among the trials the pruner let finish,
in accuracy points, averaged over tasks and seeds). Pruners:

- none: every trial runs 52 epochs.
- median (cold): Optuna's MedianPruner on the study's own trials (5 startup trials, 5 warmup
  epochs), what a study without priors gets.
- curve, same task (warm): CurvePruner (trainers/transfer/pruner.py) with a peer's curves of
  the same task (another random study of --trials configurations, another seed).
- curve + median, same task (warm): both; what `gridpoint tune --warm-start` runs (the
  study file's pruner as the curve pruner's fallback).
- curve, other tasks (warm, unrelated): CurvePruner with 10 curves from each of the other
  tasks: what happens when the priors' tasks are not alike.

Needs the `lcbench` extra (yahpo-gym pins numpy<2, so it lives in its own environment):

    python -m venv /tmp/lcb && /tmp/lcb/bin/pip install torch==2.13.0 -e '.[train,lcbench]'
    /tmp/lcb/bin/python bench/curve_pruning.py [--data ../shared/bench/transfer-hpo/yahpo]
        [--tasks 10] [--seeds 5] [--trials 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.trainers.transfer.pruner import CurvePruner  # noqa: E402

EPOCHS = 52
SPACE = {
    "batch_size": optuna.distributions.IntDistribution(16, 512, log=True),
    "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "max_dropout": optuna.distributions.FloatDistribution(0.0, 1.0),
    "max_units": optuna.distributions.IntDistribution(64, 1024, log=True),
    "momentum": optuna.distributions.FloatDistribution(0.1, 0.99),
    "num_layers": optuna.distributions.IntDistribution(1, 5),
    "weight_decay": optuna.distributions.FloatDistribution(1e-5, 0.1),
}


class Surrogate:
    """Whole learning curves of LCBench configurations from the YAHPO surrogate."""

    def __init__(self, data: Path) -> None:
        from yahpo_gym import benchmark_set, local_config

        local_config.init_config()
        local_config.set_data_path(str(data))
        self._bench = benchmark_set.BenchmarkSet("lcbench")
        self.tasks: list[str] = list(self._bench.instances)

    def curve(self, task: str, params: dict[str, float | int]) -> np.ndarray:
        self._bench.set_instance(task)
        rows = [{**params, "OpenML_task_id": task, "epoch": e} for e in range(1, EPOCHS + 1)]
        return np.array([r["val_accuracy"] for r in self._bench.objective_function(rows)])


def random_configs(n: int, seed: int) -> list[dict[str, float | int]]:
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    configs = []
    for _ in range(n):
        trial = study.ask(SPACE)
        configs.append(trial.params)
        study.tell(trial, 0.0)
    return configs


def replay(curves: list[np.ndarray], pruner: optuna.pruners.BasePruner) -> tuple[int, float]:
    """Runs the trials in order under `pruner`; returns (epochs used, best finished value)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    used, best = 0, -np.inf
    for curve in curves:
        trial = study.ask()
        pruned = False
        for epoch, value in enumerate(curve, start=1):
            used += 1
            trial.report(float(value), epoch)
            if trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, float(curve[-1]))
            best = max(best, float(curve[-1]))
    return used, best


def as_prior(curve: np.ndarray) -> list[tuple[int, float]]:
    return [(epoch, float(v)) for epoch, v in enumerate(curve, start=1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/bench/transfer-hpo/yahpo",
    )
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    surrogate = Surrogate(args.data)
    tasks = surrogate.tasks[: args.tasks]
    # Ten curves per task for the "other tasks" priors, drawn once.
    pooled = {t: [surrogate.curve(t, c) for c in random_configs(10, 999)] for t in tasks}
    pruners = (
        "none",
        "median (cold)",
        "curve, same task (warm)",
        "curve + median, same task",
        "curve, other tasks (warm)",
    )
    epochs = {p: [] for p in pruners}
    regret = {p: [] for p in pruners}
    for t in tasks:
        for seed in range(args.seeds):
            curves = [surrogate.curve(t, c) for c in random_configs(args.trials, seed)]
            peer = [
                as_prior(surrogate.curve(t, c)) for c in random_configs(args.trials, 1000 + seed)
            ]
            others = [as_prior(c) for o in tasks if o != t for c in pooled[o]]
            full = max(float(c[-1]) for c in curves)
            for name, pruner in (
                ("none", optuna.pruners.NopPruner()),
                (
                    "median (cold)",
                    optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
                ),
                ("curve, same task (warm)", CurvePruner(peer, n_warmup_steps=5)),
                (
                    "curve + median, same task",
                    CurvePruner(peer, n_warmup_steps=5, fallback=optuna.pruners.MedianPruner(5, 5)),
                ),
                ("curve, other tasks (warm)", CurvePruner(others, n_warmup_steps=5)),
            ):
                used, best = replay(curves, pruner)
                epochs[name].append(used / (len(curves) * EPOCHS))
                regret[name].append(full - best if np.isfinite(best) else full)
    rows = {
        p: {"epochs_used": float(np.mean(epochs[p])), "final_regret": float(np.mean(regret[p]))}
        for p in pruners
    }
    elapsed = time.perf_counter() - started
    if args.json:
        print(
            json.dumps(
                {"tasks": tasks, "seeds": args.seeds, "trials": args.trials, "pruners": rows},
                indent=2,
            )
        )
        return 0
    print(
        f"LCBench (YAHPO surrogate): {len(tasks)} tasks x {args.seeds} seeds x {args.trials} random "
        f"configurations, {EPOCHS} epochs each; {elapsed:.0f} s"
    )
    print(f"{'pruner':<28} {'epochs used':>12} {'saved':>7} {'final regret (acc. points)':>28}")
    for name, row in rows.items():
        print(
            f"{name:<28} {row['epochs_used']:>12.1%} {1 - row['epochs_used']:>7.1%} {row['final_regret']:>28.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
