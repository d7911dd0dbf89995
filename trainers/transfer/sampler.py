"""WarmStartSampler: an Optuna sampler that tunes a new study from prior studies.

Usable from plain Optuna code:

    sampler = WarmStartSampler(priors, {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)})
    study = optuna.create_study(direction="maximize", sampler=sampler)

Two methods (compared in bench/transfer_hpo.py, see bench/RESULTS.md):

- "rgpe" (default): the ranking-weighted ensemble of prior surfaces and the study's own GP
  (trainers/transfer/ensemble.py) proposes every trial. The first trial is the priors'
  evaluated configuration they rate best together, then the ensemble's expected
  improvement. With `design_steps=N` the first N trials after it are each trusted prior's
  own best configuration, most trusted first (a prior that lost its weight proposes
  nothing): off by default, see ensemble.TOPK_DESIGN_STEPS. `beat_target` and `family_wise`
  make the priors' ranking tests stricter (rgpe.py); `incumbent_test` shrinks the priors'
  weights once their mean rates the study's best observation worse than half of the
  candidates (ensemble.py). All three are off by default. After the study's 25th
  observation the priors' weights are scaled by 25/n (`decay_from`, ensemble.DECAY_FROM; 0
  switches it off).
- "initial-design": the priors' best configurations first, then `fallback` (multivariate
  TPE unless given).

The study's own evidence is its complete trials and its pruned ones (by their last reported
value, ranked below every complete trial): a region the pruner keeps stopping is a poor one.
Each prior's surface costs time with its trials: `max_prior_trials=N` fits it on at most N of
those inside the space, spread over their ranking (space.map_prior; the report notes it).

Priors that do not fit the search space are never dropped silently: `report` lists every
prior used (trials, similarity, notes on how it was mapped) and every prior left out with
its reason; `weights` holds the trust each prior had at the latest proposal. A prior whose
values were released with noise (a private study's) is trusted less from the start and its
surface smoothed by that noise (reliability.py); the report shows its noise and epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from gridpoint.schema import SearchDimension
from gridpoint.trainers.search_space import dimensions_from_distributions, distribution_of
from gridpoint.trainers.transfer.copula import gaussian_copula
from gridpoint.trainers.transfer.ensemble import DECAY_FROM, RankWeightedEnsemble
from gridpoint.trainers.transfer.initial_design import initial_design
from gridpoint.trainers.transfer.priors import PriorStudy
from gridpoint.trainers.transfer.reliability import noise_share
from gridpoint.trainers.transfer.space import MappedPrior, PriorExclusion, UnitSpace, map_prior
from gridpoint.trainers.transfer.surrogate import PriorSurface, prior_surface

__all__ = ["METHODS", "WarmStartSampler"]

METHODS = ("rgpe", "initial-design")
#: Random candidates (drawn once per study; the priors' means there are computed once).
N_CANDIDATES = 2048
#: Perturbations of the best points seen, drawn for each proposal.
N_LOCAL = 256
#: The best points of the study, and of each prior, that perturbations start from.
LOCAL_ANCHORS = 8
#: Standard deviations of the perturbations, in unit-cube coordinates.
LOCAL_SCALES = np.array([0.02, 0.05, 0.1])


class WarmStartSampler(BaseSampler):
    """Proposes trials from prior studies' evidence, weighted by how well each predicts this one."""

    def __init__(
        self,
        priors: Sequence[PriorStudy],
        search_space: Mapping[str, BaseDistribution] | Sequence[SearchDimension],
        *,
        method: str = "rgpe",
        design_size: int | None = None,
        fallback: BaseSampler | None = None,
        seed: int | None = None,
        design_steps: int = 0,
        beat_target: bool = False,
        family_wise: bool = False,
        incumbent_test: bool = False,
        decay_from: int = DECAY_FROM,
        max_prior_trials: int | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown warm-start method {method!r}; known: {', '.join(METHODS)}")
        dims = (
            dimensions_from_distributions(search_space)
            if isinstance(search_space, Mapping)
            else tuple(search_space)
        )
        self._space = UnitSpace(dims)
        self._distributions = {d.name: distribution_of(d) for d in dims}
        self.used: list[MappedPrior] = []
        self.excluded: list[PriorExclusion] = []
        for prior in priors:
            mapped = map_prior(prior, self._space, max_prior_trials)
            if isinstance(mapped, MappedPrior):
                self.used.append(mapped)
            else:
                self.excluded.append(mapped)
        self.method = method
        self._rng = np.random.default_rng(seed)
        self._scores = [gaussian_copula(m.values, minimize=m.minimize) for m in self.used]
        self._pool_points: np.ndarray | None = None
        self._pool_means: np.ndarray | None = None
        self._prior_best: np.ndarray | None = None
        self._bests: tuple[np.ndarray, np.ndarray] | None = None
        #: Each used prior's share of its values' variance that is release noise (0: exact).
        self.noise_shares = [noise_share(m.values, m.study.noise) for m in self.used]
        self._surfaces: list[PriorSurface] = [
            prior_surface(m.x, z, seed=i, noise=share)
            for i, (m, z, share) in enumerate(
                zip(self.used, self._scores, self.noise_shares, strict=True)
            )
        ]
        # A noisy prior starts with less trust than an exact one with the same values.
        similarity = np.array(
            [
                m.study.similarity * (1.0 - share)
                for m, share in zip(self.used, self.noise_shares, strict=True)
            ]
        )
        self._ensemble = RankWeightedEnsemble(
            self._space.dim,
            seed=seed or 0,
            prior_weights=similarity,
            design_steps=design_steps + 1 if design_steps else 0,
            beat_target=beat_target,
            family_wise=family_wise,
            incumbent_test=incumbent_test,
            decay_from=decay_from,
        )
        self._topk = design_steps > 0
        self.weights: dict[str, float] = dict(
            zip(self.labels(), self._ensemble.initial_weights(len(self.used))[:-1], strict=True)
        )
        self._design = initial_design(
            [self._completed(m, m.x) for m in self.used],
            self._scores,
            count=design_size if design_size is not None else len(self.used),
            weights=similarity if len(self.used) else None,
        )
        self._fallback = fallback or optuna.samplers.TPESampler(seed=seed, multivariate=True)

    def labels(self) -> list[str]:
        return [m.study.label for m in self.used]

    def report(self) -> list[dict[str, Any]]:
        """One row per prior: used or left out, with trials, weight and notes or reason."""
        rows: list[dict[str, Any]] = [
            {
                "prior": m.study.label,
                "used": True,
                "trials": len(m.values),
                "similarity": round(m.study.similarity, 3),
                "weight": round(self.weights.get(m.study.label, 0.0), 3),
                # Released values (a private study): the noise and the guarantee behind it.
                "noise": m.study.noise,
                "reliability": round(1.0 - share, 3),
                "epsilon": m.study.epsilon,
                "delta": m.study.delta,
                "notes": list(m.notes),
                "dimensions": [
                    {
                        "dimension": d.dimension,
                        "prior": d.prior_name or "",
                        "how": d.how,
                        "note": d.note,
                    }
                    for d in m.matches
                ],
                "trials_left_out": m.trials_outside,
                "values_clipped": m.values_clipped,
            }
            for m, share in zip(self.used, self.noise_shares, strict=True)
        ]
        rows.extend(
            {
                "prior": e.study.label,
                "used": False,
                "trials": len(e.study.trials),
                "reason": e.reason,
            }
            for e in self.excluded
        )
        return rows

    # Optuna's sampler interface.

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._after_design(study) and self.method == "initial-design":
            return self._fallback.infer_relative_search_space(study, trial)
        return dict(self._distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        if self.method == "initial-design":
            position = len(study.get_trials(deepcopy=False)) - 1
            if position < len(self._design):
                return self._space.decode(self._design[position])
            return self._fallback.sample_relative(study, trial, search_space)
        return self._space.decode(self._propose(study))

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._fallback.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._fallback.after_trial(study, trial, state, values)

    # The transfer model.

    def _after_design(self, study: Study) -> bool:
        return len(study.get_trials(deepcopy=False)) > len(self._design)

    def _observed(self, study: Study) -> tuple[np.ndarray, np.ndarray]:
        """The study's evidence: complete trials by their value, and pruned trials by their
        last reported value, ranked below every complete one (as Optuna's TPE does).
        A pruned trial says its region is poor: leaving it out let a warm start whose priors
        favour a region the curve pruner keeps stopping propose that region again and again,
        judging the priors by the one or two trials that completed (bench/RESULTS.md,
        fine-tuning with unrelated priors)."""
        minimize = study.direction == StudyDirection.MINIMIZE
        sign = 1.0 if minimize else -1.0  # lower is better from here on
        complete: list[tuple[np.ndarray, float]] = []
        pruned: list[tuple[np.ndarray, float]] = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            point = self._space.encode(t.params)
            if point is None:
                continue
            if t.state == TrialState.COMPLETE and t.value is not None:
                complete.append((point, sign * t.value))
            elif t.state == TrialState.PRUNED and t.intermediate_values:
                last = t.intermediate_values[max(t.intermediate_values)]
                if math.isfinite(last):
                    pruned.append((point, sign * last))
        # Only the values' order matters downstream (the copula): pruned values are shifted
        # past the worst complete one, keeping their own order.
        if complete and pruned:
            shift = max(v for _, v in complete) - min(v for _, v in pruned) + 1.0
            pruned = [(p, v + max(shift, 0.0)) for p, v in pruned]
        observed = complete + pruned
        points = np.array([p for p, _ in observed]).reshape(len(observed), self._space.dim)
        return points, sign * np.array([v for _, v in observed])

    def _tried(self, study: Study) -> np.ndarray:
        """Every configuration a trial of the study already holds, whatever its state."""
        points = [
            point
            for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING and (point := self._space.encode(t.params)) is not None
        ]
        return self._space.quantize(np.array(points).reshape(len(points), self._space.dim))

    def _prior_means(self, points: np.ndarray) -> np.ndarray:
        """K × len(points): each prior surface's mean, read on the dimensions it shares."""
        if not self._surfaces:
            return np.empty((0, len(points)))
        return np.vstack(
            [s.mean(points[:, m.dims]) for s, m in zip(self._surfaces, self.used, strict=True)]
        )

    def _pool(self) -> tuple[np.ndarray, np.ndarray]:
        """Random candidates drawn once, with the priors' means there computed once."""
        if self._pool_points is None:
            self._pool_points = self._space.quantize(
                self._rng.random((N_CANDIDATES, self._space.dim))
            )
            self._pool_means = self._prior_means(self._pool_points)
        assert self._pool_means is not None
        return self._pool_points, self._pool_means

    def _completed(self, prior: MappedPrior, x: np.ndarray) -> np.ndarray:
        """A prior's points in the study's whole cube: 0.5 where the prior says nothing."""
        full = np.full((len(x), self._space.dim), 0.5)
        full[:, prior.dims] = x
        return self._space.quantize(full)

    def _prior_points(self) -> np.ndarray:
        """The priors' evaluated configurations in the study's cube."""
        return np.vstack([self._completed(m, m.x) for m in self.used])

    def _local(self, observed_x: np.ndarray, observed_y: np.ndarray, minimize: bool) -> np.ndarray:
        """Perturbations of the best points seen: the study's own and the priors' bests."""
        order = np.argsort(observed_y if minimize else -observed_y)
        anchors = [observed_x[order[:LOCAL_ANCHORS]]]
        if self.used:
            anchors.append(self._prior_points_best())
        if not any(len(a) for a in anchors):
            return np.empty((0, self._space.dim))
        anchor = np.vstack([a for a in anchors if len(a)])
        picks = anchor[self._rng.integers(len(anchor), size=N_LOCAL)]
        scale = self._rng.choice(LOCAL_SCALES, size=(N_LOCAL, 1))
        return self._space.quantize(picks + self._rng.normal(0.0, 1.0, picks.shape) * scale)

    def _prior_bests(self) -> tuple[np.ndarray, np.ndarray]:
        """Each prior's best evaluated configuration, and the priors' means there."""
        if self._bests is None:
            points = np.vstack(
                [
                    self._completed(m, m.x[[int(np.argmin(z))]])
                    for m, z in zip(self.used, self._scores, strict=True)
                ]
            )
            self._bests = (points, self._prior_means(points))
        return self._bests

    def _prior_points_best(self) -> np.ndarray:
        if self._prior_best is None:
            self._prior_best = np.vstack(
                [
                    self._completed(m, m.x[np.argsort(z)[:LOCAL_ANCHORS]])
                    for m, z in zip(self.used, self._scores, strict=True)
                ]
            )
        return self._prior_best

    def _candidates(
        self, observed_x: np.ndarray, observed_y: np.ndarray, minimize: bool, tried: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates not tried yet, the priors' means at them, and which are a prior's best
        configuration (that prior's index, else -1)."""
        if len(observed_x) == 0 and self.used:
            # Before any observation, only configurations a prior actually evaluated.
            points = self._prior_points()
            means = self._prior_means(points)
        else:
            pool, pool_means = self._pool()
            local = self._local(observed_x, observed_y, minimize)
            points = np.vstack([pool, local])
            means = np.hstack([pool_means, self._prior_means(local)])
        fresh = _untried(points, tried)
        if not fresh.any():
            # Every prior configuration was tried: fall back to the random pool.
            points, means = self._pool()
            fresh = _untried(points, tried)
        points, means = points[fresh], means[:, fresh]
        owners = np.full(len(points), -1)
        if self._topk and len(observed_x) and self.used:
            # Each prior's own best configuration, as a candidate marked with its prior.
            bests, best_means = self._prior_bests()
            new = _untried(bests, tried)
            points = np.vstack([points, bests[new]])
            means = np.hstack([means, best_means[:, new]])
            owners = np.concatenate([owners, np.arange(len(self.used))[new]])
        return points, means, owners

    def _propose(self, study: Study) -> np.ndarray:
        minimize = study.direction == StudyDirection.MINIMIZE
        observed_x, observed_y = self._observed(study)
        candidates, at_candidates, owners = self._candidates(
            observed_x, observed_y, minimize, self._tried(study)
        )
        step = self._ensemble.propose(
            candidates,
            at_candidates,
            observed_x,
            observed_y,
            self._prior_means(observed_x),
            minimize=minimize,
            owners=owners,
        )
        self.weights = dict(zip(self.labels(), (float(w) for w in step.weights[:-1]), strict=True))
        return np.asarray(candidates[step.index], dtype=float)

    @property
    def target_weight(self) -> float:
        """The weight the study's own observations had at the latest proposal."""
        return max(0.0, 1.0 - sum(self.weights.values()))


def _untried(points: np.ndarray, tried: np.ndarray) -> np.ndarray:
    """A mask of the points that differ from every tried configuration."""
    if not len(tried) or not len(points):
        return np.ones(len(points), dtype=bool)
    distance = np.min(((points[:, None, :] - tried[None, :, :]) ** 2).sum(axis=2), axis=1)
    return np.asarray(distance > 1e-12, dtype=bool)
