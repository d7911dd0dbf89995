"""RGPE's ranking-loss weights: how much a new study should trust each prior model.

Feurer, Letham & Bakshy (2018), "Scalable Meta-Learning for Bayesian Optimization" (RGPE):
every model (K prior surfaces, then the study's own GP, judged by its leave-one-out means so
it cannot score itself on points it was fitted to) is scored by its ranking loss on the
study's own observations, the number of pairs of observations it orders differently than
observed, over bootstrap resamples of those observations. A model's weight is the share of
resamples in which it has the lowest loss. Two guards keep priors that do not describe this
task from steering it (negative transfer):

- weight dilution (the paper's rule): a prior whose median loss is above the 95th percentile
  of the study's own model's losses is dropped;
- better than chance (ours): from CHANCE_TEST_FROM observations on, a prior keeps weight only
  if it misorders fewer than half of a resample's pairs in at least CHANCE_CONFIDENCE of the
  resamples. With several unrelated priors one of them always wins some resamples by luck.
  With `family_wise`, the K priors are tested as a family (Bonferroni: each at confidence
  1 - (1 - CHANCE_CONFIDENCE) / K), so that ten unrelated priors are kept by luck about as
  rarely as one: tested one by one, one of ten priors of noise passes about half the time.

A pair the study observed as equal (two trials at the same accuracy, common on a small
evaluation set) has no order to get wrong and is no pair: counting it would charge every prior
that tells the two points apart, while the study's own model, fitted to the tie, predicts it
and wins every resample (a demo study whose trials all reached 1.0 reported its prior's weight
as 0). When every observation ties there is no evidence at all: the weights are those of a study
too small to judge (and the ensemble keeps the trust the priors started with).

Works on arrays of predictions only: must never fit a model, know what a prior is, or touch
Optuna; the ensemble (ensemble.py) decides what to do with the weights.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "CHANCE_CONFIDENCE",
    "CHANCE_TEST_FROM",
    "bootstrap_ranking_losses",
    "judged",
    "ranking_weights",
]

BOOTSTRAP_SAMPLES = 200
#: From this many observations on, a prior must rank them better than chance to keep weight,
#: in this share of bootstrap draws (tried in bench/transfer_hpo.py: with unrelated priors
#: this took XGBoost's regret at 100 from 1.5e-2 to 1.2e-2, cold TPE's level).
CHANCE_TEST_FROM = 5
CHANCE_CONFIDENCE = 0.9


def _untied(observed: np.ndarray) -> np.ndarray:
    """The n×n boolean matrix of the pairs (i, j) the study observed as different: the only pairs."""
    return np.asarray(observed[:, None] != observed[None, :])


def _misordered_pairs(
    predictions: np.ndarray, observed: np.ndarray, untied: np.ndarray
) -> np.ndarray:
    """For each model, an n×n 0/1 matrix: pair (i, j), one of the untied pairs (_untied),
    ordered differently than observed."""
    pred_less = predictions[:, :, None] < predictions[:, None, :]
    obs_less = observed[None, :, None] < observed[None, None, :]
    return np.asarray((pred_less ^ obs_less) & untied[None, :, :], dtype=float)


def bootstrap_ranking_losses(
    predictions: np.ndarray, observed: np.ndarray, rng: np.random.Generator, samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ranking losses, samples × models, and each resample's number of ordered pairs.

    predictions is models × n (each model's prediction at the n observed points). A resample
    draws n observations with replacement; its loss for a model counts the misordered pairs
    among the drawn observations (with their multiplicities); pairs counts the drawn pairs of
    observations that differ (a tie is no pair).
    """
    n = predictions.shape[1]
    untied = _untied(observed)
    wrong = _misordered_pairs(predictions, observed, untied)
    draws = rng.integers(0, n, size=(samples, n))
    counts = np.zeros((samples, n))
    np.add.at(counts, (np.arange(samples)[:, None], draws), 1.0)
    # losses[s, m] = counts_s' W_m counts_s: the misordered pairs within resample s.
    losses = (np.matmul(counts[None, :, :], wrong) * counts[None, :, :]).sum(axis=2).T
    pairs = ((counts @ untied.astype(float)) * counts).sum(axis=1)
    return losses, pairs


def judged(observed: np.ndarray) -> bool:
    """Whether the observations order anything: at least two of them differ."""
    return bool(np.ptp(observed) > 0) if len(observed) else False


def ranking_weights(
    prior_predictions: np.ndarray,
    target_loo: np.ndarray | None,
    observed: np.ndarray,
    rng: np.random.Generator,
    samples: int = BOOTSTRAP_SAMPLES,
    *,
    beat_target: bool = False,
    family_wise: bool = False,
) -> np.ndarray:
    """Weights of the K priors and (last) the target: P(model is the best ranker).

    prior_predictions is K×n (each prior's mean at the n observed points), target_loo the
    target GP's leave-one-out means there (None while it has too few points to judge: the
    priors then share the weight equally, as they do while every observation ties, which
    orders nothing). The weights sum to one.

    beat_target (experimental, off by default): from CHANCE_TEST_FROM observations on, a prior
    keeps weight only if its median loss is below the study's own model's, so a prior that is
    merely better than chance stops steering once the study's own model ranks better.
    family_wise: the chance test covers the K priors together (see the module docstring).
    """
    k, n = prior_predictions.shape
    if n < 2 or target_loo is None or not judged(observed):
        weights = np.zeros(k + 1)
        if k:
            weights[:k] = 1.0 / k
        else:
            weights[k] = 1.0
        return weights
    models = np.vstack([prior_predictions, target_loo[None, :]])
    losses, pairs = bootstrap_ranking_losses(models, observed, rng, samples)
    # Ties go to a random one of the best, so equally good priors share the weight.
    jitter = rng.random(losses.shape) * 1e-6
    best = np.argmin(losses + jitter, axis=1)
    weights = np.bincount(best, minlength=k + 1).astype(float)
    # Weight dilution: a prior whose median loss is worse than the target's 95th percentile
    # is no better than guessing here, whatever luck won it some draws.
    target_p95 = np.percentile(losses[:, k], 95)
    weights[:k][np.median(losses[:, :k], axis=0) > target_p95] = 0.0
    if n >= CHANCE_TEST_FROM:
        # A resample that drew only tied observations says nothing either way.
        informative = pairs > 0
        better = (losses[informative, :k] < 0.5 * pairs[informative, None]).mean(axis=0)
        confidence = 1.0 - (1.0 - CHANCE_CONFIDENCE) / k if family_wise else CHANCE_CONFIDENCE
        weights[:k][better < confidence] = 0.0
        if beat_target:
            weights[:k][np.median(losses[:, :k], axis=0) >= np.median(losses[:, k])] = 0.0
    total = weights.sum()
    if total == 0:
        weights[k] = 1.0
        return weights
    return np.asarray(weights / total, dtype=float)
