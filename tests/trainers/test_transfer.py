"""The transfer methods as a plain Optuna user sees them: sampler, pruner, prior mapping."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from gridpoint.schema import SearchDimension
from gridpoint.trainers.transfer.copula import gaussian_copula
from gridpoint.trainers.transfer.ensemble import ranking_weights
from gridpoint.trainers.transfer.priors import PriorStudy, PriorTrial
from gridpoint.trainers.transfer.pruner import CurvePruner
from gridpoint.trainers.transfer.sampler import WarmStartSampler
from gridpoint.trainers.transfer.space import MappedPrior, PriorExclusion, UnitSpace, map_prior

SPACE = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "layers": IntDistribution(1, 8)}


def loss(lr: float, layers: int, shift: float = 0.0) -> float:
    return (math.log10(lr) + 3.0 + shift) ** 2 + (layers - 5) ** 2 / 10


def prior(
    label: str, *, shift: float = 0.0, sign: float = 1.0, n: int = 40, seed: int = 0
) -> PriorStudy:
    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        lr, layers = float(10 ** rng.uniform(-5, -1)), int(rng.integers(1, 9))
        trials.append(PriorTrial({"lr": lr, "layers": layers}, sign * loss(lr, layers, shift)))
    return PriorStudy(label, tuple(trials), direction="minimize")


def objective(trial: optuna.Trial) -> float:
    return loss(trial.suggest_float("lr", 1e-5, 1e-1, log=True), trial.suggest_int("layers", 1, 8))


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_copula_keeps_order_and_flips_for_maximized_objectives() -> None:
    values = np.array([3.0, 1.0, 2.0, 10.0])
    z = gaussian_copula(values)
    assert list(np.argsort(z)) == [1, 2, 0, 3]
    assert list(np.argsort(gaussian_copula(values, minimize=False))) == [3, 0, 2, 1]


def test_ranking_weights_go_to_the_prior_that_orders_observations_right() -> None:
    rng = np.random.default_rng(0)
    observed = np.linspace(0, 1, 12)
    right, wrong = observed + rng.normal(0, 0.01, 12), -observed
    weights = ranking_weights(np.vstack([right, wrong]), rng.permutation(observed), observed, rng)
    assert weights[0] > 0.9 and weights[1] == 0.0


def test_first_trial_is_the_priors_best_configuration() -> None:
    source = prior("related")
    sampler = WarmStartSampler([source], SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1)
    best = min(source.trials, key=lambda t: t.value)
    assert study.trials[0].params["layers"] == best.params["layers"]
    assert study.trials[0].params["lr"] == pytest.approx(best.params["lr"], rel=1e-9)


def test_initial_design_runs_the_priors_bests_first_then_its_fallback() -> None:
    sources = [prior("p1", seed=1), prior("p2", seed=2)]
    sampler = WarmStartSampler(sources, SPACE, method="initial-design", seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=4)
    bests = [min(s.trials, key=lambda t: t.value).params for s in sources]
    assert [t.params["layers"] for t in study.trials[:2]] == [b["layers"] for b in bests]
    assert len(study.trials) == 4


def test_a_prior_that_ranks_the_new_task_backwards_loses_its_weight() -> None:
    sampler = WarmStartSampler([prior("adversarial", sign=-1.0)], SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=12)
    assert sampler.weights["adversarial"] < 0.2
    assert sampler.target_weight > 0.8


def test_related_priors_beat_an_unhelpful_start_on_average() -> None:
    # Same budget, three seeds: warm from a related task against warm from an adversarial one.
    def best(source: PriorStudy, seed: int) -> float:
        study = optuna.create_study(sampler=WarmStartSampler([source], SPACE, seed=seed))
        study.optimize(objective, n_trials=6)
        return study.best_value

    related = np.mean([best(prior("r", shift=0.1, seed=s), s) for s in range(3)])
    adversarial = np.mean([best(prior("a", sign=-1.0, seed=s), s) for s in range(3)])
    assert related < adversarial


def test_priors_are_mapped_by_value_renamed_by_config_or_left_out_with_a_reason() -> None:
    space = UnitSpace(
        [
            SearchDimension("learning_rate", "float", 1e-4, 1e-2, log=True),
            SearchDimension("bs", "categorical", choices=(16, 32)),
        ]
    )
    trials = (
        PriorTrial({"lr": 1e-3, "bs": 16}, 0.9),
        PriorTrial({"lr": 1e-1, "bs": 16}, 0.5),  # outside this study's range
        PriorTrial({"lr": 1e-3, "bs": 64}, 0.7),  # not one of its choices
    )
    declared = (
        SearchDimension("lr", "float", 1e-5, 1e-1, log=True),
        SearchDimension("bs", "categorical", choices=(16, 32, 64)),
    )
    renamed = map_prior(
        PriorStudy("renamed", trials, search_space=declared, renames={"lr": "learning_rate"}), space
    )
    assert isinstance(renamed, MappedPrior)
    assert len(renamed.values) == 1 and renamed.trials_outside == 2
    assert renamed.x[0] == pytest.approx([0.5, 0.0])
    assert any("2 trial(s) outside" in n for n in renamed.notes)
    assert any("renamed lr -> learning_rate" in n for n in renamed.notes)
    missing = map_prior(PriorStudy("missing", trials, search_space=declared), space)
    assert isinstance(missing, PriorExclusion) and "learning_rate" in missing.reason
    typed = (SearchDimension("learning_rate", "categorical", choices=(1e-3,)), declared[1])
    wrong_kind = map_prior(
        PriorStudy("typed", trials, search_space=typed, renames={"lr": "learning_rate"}), space
    )
    assert (
        isinstance(wrong_kind, PriorExclusion)
        and "categorical there, float here" in wrong_kind.reason
    )


def test_sampler_reports_every_prior_used_or_not() -> None:
    misfit = PriorStudy(
        "misfit", (PriorTrial({"lr": 1e-3, "depth": 3}, 1.0),), direction="minimize"
    )
    sampler = WarmStartSampler([prior("good"), misfit], SPACE, seed=0)
    report = {r["prior"]: r for r in sampler.report()}
    assert report["good"]["used"] and report["good"]["trials"] == 40
    assert not report["misfit"]["used"] and "layers" in report["misfit"]["reason"]


def test_categorical_spaces_round_trip() -> None:
    space = {
        "opt": CategoricalDistribution(["adam", "sgd"]),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
    }
    source = PriorStudy(
        "cat", tuple(PriorTrial({"opt": o, "lr": lr}, v) for o, lr, v in [("sgd", 1e-3, 0.2), ("adam", 1e-3, 0.9)]),
        direction="minimize",
    )  # fmt: skip
    study = optuna.create_study(sampler=WarmStartSampler([source], space, seed=0))
    study.optimize(
        lambda t: (
            (t.suggest_categorical("opt", ["adam", "sgd"]) == "adam")
            + t.suggest_float("lr", 1e-4, 1e-2, log=True)
        ),
        n_trials=3,
    )
    assert study.trials[0].params["opt"] == "sgd"


def _curve_study(
    pruner: optuna.pruners.BasePruner, final: list[float]
) -> list[optuna.trial.TrialState]:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for level in final:
        trial = study.ask()
        state = optuna.trial.TrialState.COMPLETE
        for step in range(1, 6):
            trial.report(level * step / 5, step)
            if trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        study.tell(trial, level if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    return [t.state for t in study.trials]


def test_curve_pruner_stops_a_first_trial_that_falls_below_the_priors_curves() -> None:
    priors = [[(s, lvl * s / 5) for s in range(1, 6)] for lvl in (0.8, 0.85, 0.9, 0.95)]
    states = _curve_study(CurvePruner(priors), [0.3, 0.92])
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]


def test_curve_pruner_without_reference_defers_to_its_fallback() -> None:
    states = _curve_study(CurvePruner([]), [0.3, 0.9])
    assert states == [optuna.trial.TrialState.COMPLETE] * 2
