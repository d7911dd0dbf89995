"""Priors across search spaces: matched names and types, clipped or dropped values, the report."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from gridpoint.schema import SearchDimension
from gridpoint.trainers.transfer.matching import match_dimensions, normalized_name
from gridpoint.trainers.transfer.priors import PriorStudy, PriorTrial
from gridpoint.trainers.transfer.sampler import WarmStartSampler
from gridpoint.trainers.transfer.space import MappedPrior, PriorExclusion, UnitSpace, map_prior

OURS = (
    SearchDimension("learning_rate", "float", 1e-4, 1e-2, log=True),
    SearchDimension("batch_size", "categorical", choices=(16, 32, 64)),
    SearchDimension("num_layers", "int", 1, 8),
    SearchDimension("warmup_ratio", "float", 0.0, 0.2),
)


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _by_dimension(study: PriorStudy) -> dict[str, tuple[str | None, str]]:
    matches, _ = match_dimensions(study, OURS)
    return {m.dimension: (m.prior_name, m.how) for m in matches}


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ("lr", "learning_rate"),
        ("LearningRate", "learning_rate"),
        ("lr_log", "learning-rate-log"),
        ("n_layers", "num_layers"),
        ("per_device_train_batch_size", "bs"),
        ("maxDepthIndex", "max_depth_index"),
        ("num_train_epochs", "epochs"),
    ],
)
def test_names_that_mean_the_same_parameter_normalize_alike(theirs: str, ours: str) -> None:
    assert normalized_name(theirs) == normalized_name(ours)


def test_distinct_parameters_keep_distinct_names() -> None:
    names = ["learning_rate", "weight_decay", "warmup_ratio", "dropout", "batch_size", "layers"]
    assert len({normalized_name(n) for n in names}) == len(names)


def test_renamed_retyped_narrowed_and_missing_dimensions_are_matched_and_said_so() -> None:
    # Prepare: another organization's names, an int batch size, a narrower range, no warmup.
    declared = (
        SearchDimension("lr", "float", 1e-4, 1e-3, log=True),
        SearchDimension("bs", "int", 16, 64),
        SearchDimension("n_layers", "int", 2, 4),
        SearchDimension("momentum", "float", 0.8, 0.99),
    )
    study = PriorStudy("other-org", (), search_space=declared)

    # Execute
    matches, ignored = match_dimensions(study, OURS)

    # Assert
    by = {m.dimension: m for m in matches}
    assert (by["learning_rate"].prior_name, by["learning_rate"].how) == ("lr", "normalized name")
    assert "range [0.0001, 0.001] there" in by["learning_rate"].note
    assert (
        by["batch_size"].prior_name == "bs"
        and "int there, categorical here" in by["batch_size"].note
    )
    assert by["num_layers"].prior_name == "n_layers"
    assert (by["warmup_ratio"].prior_name, by["warmup_ratio"].how) == (None, "missing")
    assert ignored == ["momentum"]


def test_an_explicit_rename_wins_over_a_matching_name() -> None:
    # The prior has both `learning_rate` and `lr`; the study file says its `lr` is ours.
    declared = (
        SearchDimension("learning_rate", "float", 1e-4, 1e-2, log=True),
        SearchDimension("lr", "float", 1e-4, 1e-2, log=True),
    )
    study = PriorStudy("p", (), search_space=declared, renames={"lr": "learning_rate"})
    assert _by_dimension(study)["learning_rate"] == ("lr", "renamed by config")


def test_incompatible_kinds_and_disjoint_ranges_are_not_matched() -> None:
    declared = (
        SearchDimension("learning_rate", "float", 0.1, 0.5),
        SearchDimension("batch_size", "categorical", choices=("small", "large")),
    )
    matches, _ = match_dimensions(PriorStudy("p", (), search_space=declared), OURS)
    by = {m.dimension: m for m in matches}
    assert by["learning_rate"].how == "missing" and "does not overlap" in by["learning_rate"].note
    assert by["batch_size"].how == "missing"
    assert "none of this study's choices" in by["batch_size"].note


def test_values_just_outside_are_clipped_and_values_far_outside_dropped() -> None:
    # Prepare: a prior whose learning-rate range is wider than ours on both sides.
    space = UnitSpace(OURS[:1])
    trials = (
        PriorTrial({"lr": 1e-3}, 0.9),  # inside
        PriorTrial({"lr": 1.1e-2}, 0.8),  # 2% of the log width above: clipped to 1e-2
        PriorTrial({"lr": 5e-2}, 0.7),  # 35% above: dropped
        PriorTrial({"lr": 1e-6}, 0.1),  # far below: dropped
    )
    declared = (SearchDimension("lr", "float", 1e-6, 5e-2, log=True),)

    # Execute
    mapped = map_prior(PriorStudy("wide", trials, search_space=declared), space)

    # Assert: two placed (one at the bound), two left out, and the notes say both.
    assert isinstance(mapped, MappedPrior)
    assert mapped.x[:, 0] == pytest.approx([0.5, 1.0])
    assert (mapped.values_clipped, mapped.trials_outside) == (1, 2)
    assert any("1 value(s) just outside" in n for n in mapped.notes)
    assert any("2 trial(s) outside" in n for n in mapped.notes)


def test_a_numeric_value_lands_on_a_categorical_choice_only_when_it_is_one() -> None:
    space = UnitSpace(OURS[1:2])
    trials = (
        PriorTrial({"bs": 32}, 0.9),
        PriorTrial({"bs": 48}, 0.5),
        PriorTrial({"bs": 64.0}, 0.7),
    )
    declared = (SearchDimension("bs", "int", 16, 64),)
    mapped = map_prior(PriorStudy("ints", trials, search_space=declared), space)
    assert isinstance(mapped, MappedPrior)
    assert mapped.x[:, 0] == pytest.approx([0.5, 1.0]) and mapped.trials_outside == 1


def test_missing_dimensions_are_marginalized_not_guessed() -> None:
    # Prepare: a prior that never tuned warmup_ratio or num_layers.
    rng = np.random.default_rng(0)
    trials = tuple(
        PriorTrial({"lr": float(lr), "bs": 32}, -((math.log10(lr) + 3) ** 2))
        for lr in 10 ** rng.uniform(-4, -2, 30)
    )
    study = PriorStudy("partial", trials, direction="maximize")

    # Execute
    mapped = map_prior(study, UnitSpace(OURS))

    # Assert: placed on the two dimensions it shares, the others reported as marginalized.
    assert isinstance(mapped, MappedPrior)
    assert mapped.dims == (0, 1) and mapped.x.shape == (30, 2)
    assert any("warmup_ratio: not in this prior" in n and "marginalized" in n for n in mapped.notes)


def test_a_prior_sharing_no_dimension_is_left_out_with_the_reason() -> None:
    study = PriorStudy("alien", (PriorTrial({"optimizer": "sgd", "depth": 3}, 1.0),))
    excluded = map_prior(study, UnitSpace(OURS))
    assert isinstance(excluded, PriorExclusion) and "shares no parameter" in excluded.reason


def test_the_report_says_how_every_dimension_of_a_prior_was_matched() -> None:
    trials = tuple(
        PriorTrial({"lr": 10 ** -(2 + i / 10), "n_layers": 1 + i % 4}, float(i)) for i in range(12)
    )
    sampler = WarmStartSampler([PriorStudy("theirs", trials)], OURS, seed=0)
    [row] = sampler.report()
    dims = {d["dimension"]: (d["prior"], d["how"]) for d in row["dimensions"]}
    assert dims == {
        "learning_rate": ("lr", "normalized name"),
        "batch_size": ("", "missing"),
        "num_layers": ("n_layers", "normalized name"),
        "warmup_ratio": ("", "missing"),
    }
    assert "lr -> learning_rate (normalized name)" in row["notes"]


def test_the_sampler_never_proposes_outside_the_study_space() -> None:
    # Prepare: priors whose values lie mostly outside (wider ranges, other choices, a string).
    rng = np.random.default_rng(1)
    wide = tuple(
        PriorTrial(
            {"lr": float(10 ** rng.uniform(-7, 0)), "bs": int(rng.choice([8, 16, 128])),
             "layers": int(rng.integers(0, 20)), "warmup": float(rng.uniform(-1, 1))},
            float(rng.normal()),
        )
        for _ in range(60)
    )  # fmt: skip
    space = {
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": CategoricalDistribution([16, 32, 64]),
        "num_layers": IntDistribution(1, 8),
        "warmup_ratio": FloatDistribution(0.0, 0.2, step=0.05),
    }
    sampler = WarmStartSampler([PriorStudy("wide", wide)], space, seed=0)
    study = optuna.create_study(sampler=sampler)

    # Execute
    def objective(t: optuna.Trial) -> float:
        total = 0.0
        for n, d in space.items():
            if isinstance(d, CategoricalDistribution):
                total += float(t.suggest_categorical(n, d.choices))  # type: ignore[arg-type]
            elif isinstance(d, IntDistribution):
                total += t.suggest_int(n, d.low, d.high)
            elif isinstance(d, FloatDistribution):
                total += t.suggest_float(n, d.low, d.high, log=d.log, step=d.step)
        return total

    study.optimize(
        objective,
        n_trials=12,
    )

    # Assert: every proposal is inside its distribution, and none repeats.
    for trial in study.trials:
        p = trial.params
        assert 1e-4 <= p["learning_rate"] <= 1e-2 and p["batch_size"] in (16, 32, 64)
        assert isinstance(p["num_layers"], int) and 1 <= p["num_layers"] <= 8
        assert 0.0 <= p["warmup_ratio"] <= 0.2
        assert p["warmup_ratio"] / 0.05 == pytest.approx(round(p["warmup_ratio"] / 0.05))
    configs = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(configs) == len(study.trials)


@pytest.mark.parametrize(
    ("direction", "spread"),
    [("maximize", [0.66, 0.63, 0.6]), ("minimize", [0.6, 0.63, 0.66])],
)
def test_a_large_priors_trials_in_the_space_are_spread_over_their_ranking(
    direction: str, spread: list[float]
) -> None:
    # Prepare: seven trials inside the space (values 0.60 to 0.66) and five outside it, the
    # best of all among those outside.
    inside = [PriorTrial({"lr": 1e-4 * (i + 1)}, 0.6 + i / 100) for i in range(7)]
    outside = [PriorTrial({"lr": 1.0}, 0.9 if direction == "maximize" else 0.1) for _ in range(5)]
    prior = PriorStudy("p", tuple(outside + inside), direction=direction)
    space = UnitSpace((SearchDimension("lr", "float", 1e-5, 1e-2, log=True),))
    # Execute: at most three trials.
    mapped = map_prior(prior, space, most=3)
    # Assert: the best, middle and worst of the seven inside (none lost to those outside),
    # and the report says so.
    assert isinstance(mapped, MappedPrior)
    assert list(mapped.values) == pytest.approx(spread)
    assert "3 of its 7 trials here, spread over their ranking" in mapped.notes
    assert mapped.trials_outside == 5
