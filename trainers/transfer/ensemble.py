"""The transfer model: a ranking-weighted ensemble of prior surfaces and the target GP.

RGPE (Feurer, Letham & Bakshy, 2018) in the copula space: each prior study's surface and
the new task's own GP are weighted by their ranking loss on the new task's observations
(rgpe.py). This is how a study learns how much to trust each prior from its own observations:
a prior that misorders what the new task has seen loses its weight, whatever its size, so
unrelated priors cannot keep steering the search (negative transfer is bounded), and the
target GP takes over as its own data grows.

With `incumbent_test` (off by default; measured in bench/RESULTS.md, "6 December 2026,
morning"): ranking is not all a prior is for, it also says where the good region is. A prior
can order the study's observations better than chance (and, once the study's points cluster
near its optimum, better than the study's own GP judged by leave-one-out) while rating the
study's best observation as a poor configuration. Its weights are then trusted in full only
while the priors' weighted mean rates the study's best observation better than half of the
candidates, less and less beyond, not at all at the worst (`incumbent_trust`).

The priors' weights decay: once the study has n > DECAY_FROM observations of its own, they
are scaled by DECAY_FROM/n, the share they lose going to the study's own model (after piBO,
Hvarfner et al., 2022, which decays a user's prior as the study grows). A prior only weakly
related to the study can rank its clustered late observations better than the study's own GP
does (leave-one-out ranks them near chance) and keep its weight by the ranking test alone;
the decay hands most of it to the study's own model in a long study whatever the test says
(at 100 observations the priors keep a quarter of what the test gives them; `decay_from=0`
switches it off).

The acquisition is expected improvement of the weighted priors' mean plus a GP fitted on
what that mean does not explain of the new task's observations (the residual), with the
residual GP's uncertainty. Works on arrays over the unit cube; knows nothing of Optuna,
studies or where priors came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from gridpoint.trainers.transfer.copula import gaussian_copula
from gridpoint.trainers.transfer.rgpe import judged, ranking_weights
from gridpoint.trainers.transfer.surrogate import TargetModel

__all__ = [
    "DECAY_FROM",
    "TOPK_DESIGN_STEPS",
    "EnsembleStep",
    "RankWeightedEnsemble",
    "incumbent_trust",
]

#: Below this many observations the residual GP keeps a fixed kernel (few points cannot
#: identify length scales).
RESIDUAL_FIT_FROM = 8
#: Below this many observations of its own the target cannot be ranked; priors share the weight.
MIN_TARGET_POINTS = 3

#: The priors' weights are scaled by DECAY_FROM/n after the study's n-th observation, n >
#: DECAY_FROM. Measured at 30 seeds (bench/RESULTS.md, "7 December 2026, night"): with
#: unrelated priors, DeepAR's regret at 100 trials +35% -> +2% of cold TPE's (XGBoost -9% ->
#: -8%); with related ones, trials to reach cold TPE's 100-trial regret 54 -> 53, DeepAR's
#: regret at 100 9.9e-07 -> 3.1e-06 (cold TPE 1.7e-05). Later than the 25 trials in which
#: the priors matter most.
DECAY_FROM = 25

#: With `design_steps` (off by default): the study's first proposals go to prior bests
#: (transfer of top configurations): the priors' consensus first, then each trusted prior's
#: own best while the study has fewer observations than design_steps; a prior that lost its
#: weight proposes nothing. Measured with 6 (bench/RESULTS.md, December 2026): better at 50
#: and 100 iterations, worse at 10 and 25 on both blackboxes, so not the default.
TOPK_DESIGN_STEPS = 6


@dataclass(frozen=True)
class EnsembleStep:
    """One proposal: the chosen candidate's index and the weights that chose it."""

    index: int
    weights: np.ndarray  # K priors, then the target


class RankWeightedEnsemble:
    """Proposes the next point among candidates from priors' surfaces and the target GP."""

    def __init__(
        self,
        dim: int,
        seed: int = 0,
        prior_weights: np.ndarray | None = None,
        design_steps: int = 0,
        beat_target: bool = False,
        family_wise: bool = False,
        incumbent_test: bool = False,
        decay_from: int = DECAY_FROM,
    ) -> None:
        if decay_from < 0:
            raise ValueError(f"decay_from must be 0 (off) or more, got {decay_from}")
        self._incumbent_test = incumbent_test
        self._decay_from = decay_from
        self._design_steps = design_steps
        self._beat_target = beat_target
        self._family_wise = family_wise
        self._target = TargetModel(dim)
        self._residual = TargetModel(dim, fit_from=RESIDUAL_FIT_FROM)
        self._rng = np.random.default_rng(seed)
        # What the priors are trusted with before the new task has been observed at all
        # (the node passes task-descriptor similarity); uniform when not given.
        self._initial = None if prior_weights is None else np.asarray(prior_weights, dtype=float)

    def initial_weights(self, k: int) -> np.ndarray:
        """Weights of the K priors and the target before the target can be judged.

        With similarities given, prior k starts at similarity_k / K and the target holds
        the rest: a lone prior of an unlike task starts near zero, a set of like ones near
        one in all. (Before any observation the proposal is the same either way: the best
        point of the priors' weighted mean.)
        """
        if k == 0:
            return np.ones(1)
        if self._initial is None:
            return np.append(np.full(k, 1.0 / k), 0.0)
        priors = np.clip(self._initial, 0.0, 1.0) / k
        return np.append(priors, 1.0 - priors.sum())

    def propose(
        self,
        candidates: np.ndarray,
        prior_at_candidates: np.ndarray,
        observed_x: np.ndarray,
        observed_y: np.ndarray,
        prior_at_observed: np.ndarray,
        *,
        minimize: bool = True,
        owners: np.ndarray | None = None,
    ) -> EnsembleStep:
        """prior_at_* are K×m and K×n means of the K prior surfaces (K may be 0).

        owners (m ints, optional) marks the candidates that are a prior's own best
        configuration (the prior's index; -1 for any other candidate): while the study has
        fewer than `design_steps` observations, the most trusted prior's best not tried yet
        is proposed (ties go to the one the weighted priors rate best), before any model of
        the study's own is fitted.
        """
        n = len(observed_y)
        k = prior_at_candidates.shape[0]
        if n == 0 or (k == 0 and n < MIN_TARGET_POINTS):
            if k == 0:
                return EnsembleStep(int(self._rng.integers(len(candidates))), np.ones(1))
            weights = self.initial_weights(k)
            return EnsembleStep(int(np.argmin(weights[:k] @ prior_at_candidates)), weights)
        z = gaussian_copula(observed_y, minimize=minimize)
        target_loo = None
        if n >= MIN_TARGET_POINTS:
            self._target.fit(observed_x, z)
            target_loo = self._target.loo_mean()
        weights = ranking_weights(
            prior_at_observed,
            target_loo,
            z,
            self._rng,
            beat_target=self._beat_target,
            family_wise=self._family_wise,
        )
        if k and (target_loo is None or not judged(z)):
            # Nothing to judge the priors by yet (too few points, or all tied): the trust
            # they started with, not an equal share.
            weights = self.initial_weights(k)
        if self._incumbent_test and k and weights[:k].any() and judged(z):
            trust = incumbent_trust(
                weights[:k] @ prior_at_candidates,
                float((weights[:k] @ prior_at_observed)[int(np.argmin(z))]),
            )
            weights = _priors_scaled(weights, trust)
        if self._decay_from and k and n > self._decay_from:
            weights = _priors_scaled(weights, self._decay_from / n)
        if owners is not None and k and n < self._design_steps:
            pick = _design_pick(owners, weights[:k], weights[:k] @ prior_at_candidates)
            if pick is not None:
                return EnsembleStep(pick, weights)
        # The priors' weighted mean is the prior mean of a GP on what it does not explain of
        # this study's own observations: each observation corrects the surface around it and
        # the GP's uncertainty steers the search off what was seen, however much the priors
        # are trusted. A prior that lost its weight adds nothing; with none, a plain GP.
        at_candidates = weights[:k] @ prior_at_candidates if k else np.zeros(len(candidates))
        at_observed = weights[:k] @ prior_at_observed if k else np.zeros(n)
        self._residual.fit(observed_x, z - at_observed)
        residual_mean, std = self._residual.predict(candidates)
        incumbent = float(np.min(z))
        return EnsembleStep(
            _expected_improvement_argmax(at_candidates + residual_mean, std, incumbent), weights
        )


def incumbent_trust(rated_candidates: np.ndarray, rated_best: float) -> float:
    """The share of their weights the priors keep, given how their weighted mean rates the
    study's best observation (rated_best) among the candidates (rated_candidates; lower is
    better): all of it while the best observation is in the priors' better half, then
    linearly less, none when they rate it worse than every candidate."""
    if not len(rated_candidates):
        return 1.0
    worse_than = float(np.mean(rated_candidates < rated_best))
    return float(np.clip(2.0 * (1.0 - worse_than), 0.0, 1.0))


def _priors_scaled(weights: np.ndarray, factor: float) -> np.ndarray:
    """K priors' weights, then the target's: the priors' scaled by factor, the share they
    lose going to the target."""
    priors = factor * weights[:-1]
    return np.append(priors, 1.0 - priors.sum())


def _design_pick(owners: np.ndarray, weights: np.ndarray, rated: np.ndarray) -> int | None:
    """The candidate that is the best configuration of the most trusted prior, if any."""
    owners = np.asarray(owners)
    mine = np.flatnonzero(owners >= 0)
    trust = weights[owners[mine]] if len(mine) else np.empty(0)
    if not len(mine) or trust.max() <= 0:
        return None
    top = mine[trust >= trust.max() - 1e-9]
    return int(top[np.argmin(rated[top])])


def _expected_improvement_argmax(mean: np.ndarray, std: np.ndarray, incumbent: float) -> int:
    if not np.any(std > 1e-12):
        return int(np.argmin(mean))
    safe = np.maximum(std, 1e-12)
    u = (incumbent - mean) / safe
    ei = (incumbent - mean) * norm.cdf(u) + safe * norm.pdf(u)
    ei[std <= 1e-12] = np.maximum(incumbent - mean[std <= 1e-12], 0.0)
    return int(np.argmax(ei))
