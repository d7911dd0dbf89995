"""RGPE's ranking-loss weights: useless priors lose their weight, good ones keep it."""

from __future__ import annotations

import numpy as np
import pytest

from gridpoint.trainers.transfer.rgpe import bootstrap_ranking_losses, ranking_weights


def observations(n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng


@pytest.mark.parametrize("seed", range(5))
def test_useless_priors_get_about_no_weight(seed: int) -> None:
    observed, rng = observations(30, seed)
    target_loo = observed + rng.normal(0, 0.7, 30)  # the study's own model: rough but related
    useless = rng.normal(size=(4, 30))  # four priors of tasks unrelated to this one
    weights = ranking_weights(useless, target_loo, observed, rng)
    assert weights[:4].sum() < 0.05
    assert weights[4] == pytest.approx(1.0 - weights[:4].sum())


@pytest.mark.parametrize("seed", range(5))
def test_a_perfect_prior_gets_the_weight_beside_useless_ones(seed: int) -> None:
    observed, rng = observations(12, seed)
    target_loo = observed + rng.normal(0, 0.7, 12)
    perfect = 3.0 * observed - 1.0  # another scale, the same order
    priors = np.vstack([perfect, rng.normal(size=(3, 12)), -observed])
    weights = ranking_weights(priors, target_loo, observed, rng)
    assert weights[0] > 0.9
    assert weights[1:5].sum() == pytest.approx(0.0)


def test_a_prior_reversing_the_order_gets_none() -> None:
    observed, rng = observations(8, 0)
    weights = ranking_weights(-observed[None, :], observed[::-1].copy(), observed, rng)
    assert weights[0] == 0.0 and weights[1] == 1.0


def test_priors_share_the_weight_until_the_target_can_be_judged() -> None:
    observed, rng = observations(2, 0)
    weights = ranking_weights(rng.normal(size=(4, 2)), None, observed, rng)
    assert list(weights) == [0.25, 0.25, 0.25, 0.25, 0.0]


def test_the_loss_counts_the_misordered_pairs_of_each_resample() -> None:
    observed = np.array([0.0, 1.0, 2.0])
    models = np.vstack([observed, -observed])
    losses, pairs = bootstrap_ranking_losses(models, observed, np.random.default_rng(0), 50)
    # Same order: never wrong. Reversed: every (ordered) pair of draws of two different
    # observations is wrong; two copies of one observation are never a pair.
    assert np.all(losses[:, 0] == 0.0)
    assert np.array_equal(losses[:, 1], pairs)
    assert pairs.max() > 0


def test_with_beat_target_a_prior_must_out_rank_the_studys_own_model() -> None:
    observed, rng = observations(30, 0)
    target_loo = observed + rng.normal(0, 0.5, 30)
    weaker = observed + rng.normal(0, 0.7, 30)  # better than chance, worse than the study's model
    perfect = 2.0 * observed
    default = ranking_weights(weaker[None, :], target_loo, observed, np.random.default_rng(1))
    strict = ranking_weights(
        np.vstack([weaker, perfect]),
        target_loo,
        observed,
        np.random.default_rng(1),
        beat_target=True,
    )
    assert default[0] > 0.1
    assert strict[0] == 0.0 and strict[1] > 0.9


def prior_weights_over_seeds(n: int, related: bool, *, family_wise: bool) -> np.ndarray:
    """The weight given to prior 0 (related or not) among nine priors unrelated to the study,
    whose own model ranks poorly (as late in a study, when its points cluster), per seed."""
    out = []
    for seed in range(20):
        observed, rng = observations(n, seed)
        target_loo = observed + rng.normal(0, 1.5, n)
        first = observed + rng.normal(0, 0.7, n) if related else rng.normal(size=n)
        priors = np.vstack([first, rng.normal(size=(9, n))])
        weights = ranking_weights(priors, target_loo, observed, rng, family_wise=family_wise)
        out.append(weights[0] if related else weights[:10].sum())
    return np.array(out)


def test_many_unrelated_priors_lose_their_weight_together() -> None:
    # Ten priors each tested alone: one of them passes the chance test by luck about half the
    # time. Tested as a family, about as rarely as the test's confidence allows (a bootstrap
    # test on 20 points is a little lenient).
    alone = prior_weights_over_seeds(20, related=False, family_wise=False)
    family = prior_weights_over_seeds(20, related=False, family_wise=True)
    assert np.mean(family > 0.05) <= 0.2 < np.mean(alone > 0.05)
    assert family.mean() < alone.mean() / 2


def test_a_related_prior_keeps_its_weight_among_unrelated_ones() -> None:
    weights = prior_weights_over_seeds(20, related=True, family_wise=True)
    assert weights.mean() > 0.6


def test_observations_that_all_tie_order_nothing_so_the_priors_keep_their_share() -> None:
    # Every trial at the same accuracy: the study's own model fits the tie exactly, and
    # counting tied pairs would give it all the weight; there is no evidence either way.
    rng = np.random.default_rng(0)
    tied = np.zeros(4)
    weights = ranking_weights(rng.normal(size=(2, 4)), np.zeros(4), tied, rng)
    assert list(weights) == [0.5, 0.5, 0.0]


def test_a_prior_is_never_charged_for_ordering_what_the_study_saw_as_equal() -> None:
    # Prepare: two pairs of tied observations, and a prior that orders every observed
    # difference right and breaks both ties.
    observed = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 3.0])
    prior = np.array([0.0, 0.1, 1.0, 2.0, 3.0, 2.9])
    rng = np.random.default_rng(0)
    losses, pairs = bootstrap_ranking_losses(prior[None, :], observed, rng, 50)
    assert np.all(losses == 0.0)
    # Each resample's pairs are its draws of observations that differ.
    draws = np.random.default_rng(0).integers(0, 6, size=(50, 6))
    values = observed[draws]
    expected = (values[:, :, None] != values[:, None, :]).sum(axis=(1, 2))
    assert np.array_equal(pairs, expected)
    # Against the study's own model, which fits the ties exactly, the prior is as good.
    weights = ranking_weights(prior[None, :], observed.copy(), observed, rng)
    assert weights[0] == pytest.approx(0.5, abs=0.1)
