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
