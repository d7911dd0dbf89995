"""The transfer methods as a plain Optuna user sees them: sampler, pruner, prior mapping."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from gridpoint.trainers.transfer.copula import gaussian_copula
from gridpoint.trainers.transfer.ensemble import RankWeightedEnsemble, incumbent_trust
from gridpoint.trainers.transfer.priors import PriorStudy, PriorTrial
from gridpoint.trainers.transfer.pruner import CurvePruner
from gridpoint.trainers.transfer.rgpe import ranking_weights
from gridpoint.trainers.transfer.sampler import WarmStartSampler
from gridpoint.trainers.transfer.surrogate import (
    MEMO_FROM,
    PriorSurface,
    _matern52,
    prior_surface,
)

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


def test_sampler_reports_every_prior_used_or_not() -> None:
    misfit = PriorStudy(
        "misfit", (PriorTrial({"optimizer": "adam", "depth": 3}, 1.0),), direction="minimize"
    )
    sampler = WarmStartSampler([prior("good"), misfit], SPACE, seed=0)
    report = {r["prior"]: r for r in sampler.report()}
    assert report["good"]["used"] and report["good"]["trials"] == 40
    assert [d["how"] for d in report["good"]["dimensions"]] == ["same name", "same name"]
    assert not report["misfit"]["used"] and "shares no parameter" in report["misfit"]["reason"]


def test_a_prior_released_with_noise_is_trusted_less_than_the_same_values_exact() -> None:
    exact = prior("exact")
    spread = float(np.std([t.value for t in exact.trials]))
    noisy = dataclasses.replace(exact, label="noisy", noise=0.7 * spread, epsilon=1.0, delta=1e-5)
    sampler = WarmStartSampler([exact, noisy], SPACE, seed=0)
    assert sampler.weights["noisy"] < sampler.weights["exact"]
    report = {r["prior"]: r for r in sampler.report()}
    assert report["noisy"]["epsilon"] == 1.0 and report["noisy"]["delta"] == 1e-5
    assert report["noisy"]["reliability"] == pytest.approx(1 - 0.49, abs=1e-3)
    assert report["exact"]["epsilon"] is None and report["exact"]["reliability"] == 1.0
    # Its surface is smoothed by that noise instead of passing through each released value.
    x, values = sampler.used[0].x, gaussian_copula(sampler.used[0].values)
    fitted = [
        np.abs(prior_surface(x, values, noise=share).mean(x) - values).mean()
        for share in (0.0, 0.49)
    ]
    assert fitted[1] > fitted[0]


def test_trials_that_all_tie_leave_each_prior_the_trust_it_started_with() -> None:
    # A task so easy that every trial scores the same: nothing in it says the prior was wrong
    # (the demo printed a learned weight of 0.00 for its only prior here).
    related = dataclasses.replace(prior("related"), similarity=0.8)
    sampler = WarmStartSampler([related], SPACE, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda trial: objective(trial) * 0.0 + 1.0, n_trials=4)
    assert sampler.weights["related"] == pytest.approx(0.8)
    assert sampler.target_weight == pytest.approx(0.2)


def test_a_pruned_prior_best_is_never_proposed_again() -> None:
    # Prepare: the priors' best configuration is the first trial, and it gets pruned.
    sampler = WarmStartSampler([prior("p")], SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    first = study.ask()
    objective(first)
    study.tell(first, state=optuna.trial.TrialState.PRUNED)

    # Execute: the next trials still have no complete trial to learn from.
    later = []
    for _ in range(3):
        trial = study.ask()
        objective(trial)
        later.append(trial.params)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)

    # Assert: no configuration is proposed twice.
    configs = [first.params, *later]
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)


def test_pruned_trials_count_as_the_studys_evidence_below_every_complete_one() -> None:
    # Prepare: a prior that rates the study's best region worst and its worst region best.
    misleading = prior("misleading", sign=-1.0)
    sampler = WarmStartSampler([misleading], SPACE, seed=0)
    study = optuna.create_study(sampler=sampler)
    # One trial completed at the study's optimum; the prior's three favourite configurations
    # were each stopped by the curve pruner after one poor step (as the curve pruner stops a
    # warm start's trials in a region the priors rate well and the study does not).
    study.add_trial(
        optuna.trial.create_trial(params={"lr": 1e-3, "layers": 5}, distributions=SPACE, value=0.0)
    )
    favourites = sorted(misleading.trials, key=lambda t: t.value)[:3]
    for trial in favourites:
        study.add_trial(
            optuna.trial.create_trial(
                params=dict(trial.params),
                distributions=SPACE,
                state=optuna.trial.TrialState.PRUNED,
                intermediate_values={1: 5.0},
            )
        )
    # Execute
    proposed = study.ask(SPACE).params
    # Assert: the pruned trials are what the prior is judged by: it ranked them best, the
    # study ranks them below its one complete trial, so the prior loses its weight (with
    # one complete trial alone it kept the full trust it started with, and proposed its
    # favourite corner, lr 1e-5, once more).
    assert sampler.weights["misleading"] < 0.5
    assert sampler.target_weight > 0.5
    assert proposed["lr"] > 1e-4


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


def test_curve_pruner_never_prunes_on_a_single_low_point_of_a_steep_curve() -> None:
    # Prepare: the priors rise slowly; this trial starts below them and then climbs steeply.
    priors = [[(s, lvl * s / 5) for s in range(1, 6)] for lvl in (0.8, 0.85, 0.9, 0.95)]
    study = optuna.create_study(direction="maximize", pruner=CurvePruner(priors))
    trial = study.ask()

    # Execute / Assert: one point below the reference is not enough; two in a row are.
    trial.report(0.05, 1)
    assert not trial.should_prune()
    trial.report(0.9, 2)
    assert not trial.should_prune()
    trial.report(0.1, 3)
    assert not trial.should_prune()
    trial.report(0.1, 4)
    assert trial.should_prune()


def test_curve_pruner_without_reference_defers_to_its_fallback() -> None:
    states = _curve_study(CurvePruner([]), [0.3, 0.9])
    assert states == [optuna.trial.TrialState.COMPLETE] * 2


def test_after_the_consensus_each_priors_own_best_is_tried_next() -> None:
    # Prepare: two related priors whose optima lie apart (lr 1e-3 and 1e-2).
    sources = [prior("near", seed=1), prior("far", shift=-1.0, seed=2)]
    sampler = WarmStartSampler(sources, SPACE, seed=0, design_steps=2)
    study = optuna.create_study(sampler=sampler)

    # Execute
    study.optimize(objective, n_trials=3)

    # Assert: trials 2 and 3 ran the two priors' best configurations (in some order).
    bests = {
        (round(math.log10(float(b.params["lr"])), 6), b.params["layers"])
        for b in (min(s.trials, key=lambda t: t.value) for s in sources)
    }
    ran = {(round(math.log10(t.params["lr"]), 6), t.params["layers"]) for t in study.trials}
    assert bests <= ran


def test_a_prior_that_lost_its_weight_gets_no_design_proposal() -> None:
    # Prepare: prior 0 ranks the observations right, prior 1 backwards; candidate 0 is
    # prior 1's best, candidate 1 prior 0's, candidate 2 an ordinary one.
    x = np.linspace(0, 1, 5)[:, None]
    z = x[:, 0].copy()
    at_observed = np.vstack([z, -z])
    candidates = np.array([[0.9], [0.1], [0.5]])
    at_candidates = np.array([[0.9, 0.1, 0.5], [-0.9, -0.1, -0.5]])
    owners = np.array([1, 0, -1])
    ensemble = RankWeightedEnsemble(1, seed=0, design_steps=6)

    # Execute
    step = ensemble.propose(candidates, at_candidates, x, z, at_observed, owners=owners)

    # Assert: the backward prior has no weight, and the trusted prior's best is proposed.
    assert step.weights[1] == 0.0 and step.index == 1
    # Without any trusted prior's best among the candidates, the model chooses as before.
    plain = RankWeightedEnsemble(1, seed=0, design_steps=6).propose(
        candidates, at_candidates, x, z, at_observed, owners=np.array([1, -1, -1])
    )
    assert plain.index != 0


def test_with_incumbent_test_priors_that_rate_the_best_observation_poorly_lose_weight() -> None:
    # Prepare: one prior whose mean rises along x (it says the task is good near 0). The study
    # has two observations, too few to judge its own model, so the ranking leaves the prior
    # all the trust it started with; they differ only in which one was better.
    candidates = np.linspace(0.0, 1.0, 101)[:, None]
    x = np.array([[0.1], [0.95]])

    def weights(y: list[float], incumbent_test: bool) -> np.ndarray:
        ensemble = RankWeightedEnsemble(1, seed=0, incumbent_test=incumbent_test)
        return ensemble.propose(candidates, candidates.T, x, np.array(y), x.T).weights

    # Execute
    agrees, misled = weights([0.0, 1.0], True), weights([1.0, 0.0], True)

    # Assert: best where the prior says good, it keeps its weight; best at 0.95, which the
    # prior rates worse than 95 of the 101 candidates, it keeps a little and the study's own
    # model takes the rest. Without the test (the default) it keeps all of it.
    assert agrees[0] == 1.0
    assert misled[0] == pytest.approx(2.0 * (1.0 - 95 / 101))
    assert misled[1] == pytest.approx(1.0 - misled[0])
    assert weights([1.0, 0.0], False)[0] == 1.0


def test_with_decay_the_priors_weights_shrink_as_n_over_the_study_s_own_observations() -> None:
    # Prepare: one prior whose mean orders the study's observations exactly as they came out,
    # so the ranking test gives it weight; the study has 6, then 12 observations.
    candidates = np.linspace(0.0, 1.0, 101)[:, None]

    def weights(n: int, decay_from: int) -> np.ndarray:
        x = np.linspace(0.05, 0.95, n)[:, None]
        ensemble = RankWeightedEnsemble(1, seed=0, decay_from=decay_from)
        return ensemble.propose(candidates, candidates.T, x, x[:, 0], x.T).weights

    # Execute
    plain6, decayed6 = weights(6, 0), weights(6, 6)
    plain12, decayed12 = weights(12, 0), weights(12, 6)

    # Assert: up to decay_from observations nothing changes; at 12 the prior keeps 6/12 of
    # the weight the ranking gave it, and the study's own model holds the rest.
    assert plain12[0] > 0.3
    assert np.array_equal(decayed6, plain6)
    assert decayed12[0] == pytest.approx(plain12[0] * 6 / 12)
    assert decayed12[1] == pytest.approx(1.0 - decayed12[0])


def test_the_sampler_decays_the_priors_weights_after_its_25th_trial_unless_told_not_to() -> None:
    # Same prior, same seed; the 27th proposal is the first made from more than 25 trials.
    def weights(sampler: WarmStartSampler) -> dict[str, float]:
        optuna.create_study(sampler=sampler).optimize(objective, n_trials=27)
        return sampler.weights

    source = prior("p", shift=0.2)
    decayed = weights(WarmStartSampler([source], SPACE, seed=0))
    plain = weights(WarmStartSampler([source], SPACE, seed=0, decay_from=0))
    assert plain["p"] > 0.0
    assert decayed["p"] == pytest.approx(plain["p"] * 25 / 26)
    with pytest.raises(ValueError, match="decay_from"):
        WarmStartSampler([prior("p")], SPACE, decay_from=-1)


def test_priors_keep_full_trust_while_the_best_observation_is_in_their_better_half() -> None:
    rated = np.arange(10.0)  # ten candidates as the priors rate them, lower is better
    assert incumbent_trust(rated, 0.5) == 1.0
    assert incumbent_trust(rated, 4.5) == 1.0  # better than half of them
    assert incumbent_trust(rated, 7.5) == pytest.approx(0.4)  # worse than eight of ten
    assert incumbent_trust(rated, 100.0) == 0.0
    assert incumbent_trust(np.empty(0), 1.0) == 1.0


def test_a_prior_surface_is_fitted_once_per_trials_and_scores_like_a_fresh_fit() -> None:
    rng = np.random.default_rng(3)
    x, z = rng.random((40, 2)), rng.normal(size=40)
    first = prior_surface(x, z, seed=0)
    assert prior_surface(x.copy(), z.copy(), seed=0) is first
    assert prior_surface(x, z + 1.0, seed=0) is not first
    points = rng.random((MEMO_FROM, 2))  # large enough to be remembered
    fresh = PriorSurface(x, z, seed=0)
    assert np.allclose(first.mean(points), fresh.mean(points))
    assert np.allclose(first.mean(points), fresh.mean(points))  # the remembered answer
    # The Matérn 5/2 by matrix product is the textbook formula.
    r = np.sqrt((((points[:5, None, :] - x[None, :3, :]) / 0.3) ** 2).sum(axis=2)) * math.sqrt(5)
    assert np.allclose(
        _matern52(points[:5], x[:3], np.full(2, 0.3)), (1 + r + r**2 / 3) * np.exp(-r)
    )
