"""WarmStartSampler: an Optuna sampler that tunes a new study from prior studies.

Usable from plain Optuna code:

    sampler = WarmStartSampler(priors, {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True)})
    study = optuna.create_study(direction="maximize", sampler=sampler)

Two methods (compared in bench/transfer_hpo.py, see bench/RESULTS.md):

- "rgpe" (default): the ranking-weighted ensemble of prior surfaces and the study's own GP
  (trainers/transfer/ensemble.py) proposes every trial. Before the study has observations
  of its own it proposes the priors' evaluated configurations, best predicted first.
- "initial-design": the priors' best configurations first, then `fallback` (multivariate
  TPE unless given).

Priors that do not fit the search space are never dropped silently: `report` lists every
prior used (trials, similarity, notes on how it was mapped) and every prior left out with
its reason; `weights` holds the trust each prior had at the latest proposal.
"""

from __future__ import annotations

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
from gridpoint.trainers.transfer.ensemble import RankWeightedEnsemble
from gridpoint.trainers.transfer.initial_design import initial_design
from gridpoint.trainers.transfer.priors import PriorStudy
from gridpoint.trainers.transfer.space import MappedPrior, PriorExclusion, UnitSpace, map_prior
from gridpoint.trainers.transfer.surrogate import PriorSurface

__all__ = ["METHODS", "WarmStartSampler"]

METHODS = ("rgpe", "initial-design")
#: Random points scored per proposal, besides local perturbations of the best known points.
N_CANDIDATES = 2048


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
            mapped = map_prior(prior, self._space)
            if isinstance(mapped, MappedPrior):
                self.used.append(mapped)
            else:
                self.excluded.append(mapped)
        self.method = method
        self._rng = np.random.default_rng(seed)
        self._scores = [gaussian_copula(m.values, minimize=m.minimize) for m in self.used]
        self._surfaces = [
            PriorSurface(m.x, z, seed=i)
            for i, (m, z) in enumerate(zip(self.used, self._scores, strict=True))
        ]
        similarity = np.array([m.study.similarity for m in self.used])
        self._ensemble = RankWeightedEnsemble(
            self._space.dim, seed=seed or 0, prior_weights=similarity
        )
        self.weights: dict[str, float] = dict(
            zip(self.labels(), self._ensemble.initial_weights(len(self.used))[:-1], strict=True)
        )
        self._design = initial_design(
            [m.x for m in self.used],
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
                "notes": list(m.notes),
            }
            for m in self.used
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
        points, values = [], []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            point = self._space.encode(t.params)
            if point is not None and t.value is not None:
                points.append(point)
                values.append(t.value)
        return np.array(points).reshape(len(points), self._space.dim), np.array(values)

    def _candidates(self, observed_x: np.ndarray) -> np.ndarray:
        if len(observed_x) == 0 and self.used:
            # Before any observation, only configurations a prior actually evaluated.
            return np.vstack([m.x for m in self.used])
        anchors = [observed_x] + [
            m.x[np.argsort(z)[:8]] for m, z in zip(self.used, self._scores, strict=True)
        ]
        anchor = (
            np.vstack([a for a in anchors if len(a)])
            if any(len(a) for a in anchors)
            else np.empty((0, self._space.dim))
        )
        local = (
            np.clip(
                anchor[self._rng.integers(len(anchor), size=512)]
                + self._rng.normal(0, 0.05, (512, self._space.dim)),
                0,
                1,
            )
            if len(anchor)
            else np.empty((0, self._space.dim))
        )
        candidates = np.vstack([self._rng.random((N_CANDIDATES, self._space.dim)), local])
        if len(observed_x):
            # Never propose (almost) exactly what was already run.
            distance = np.min(
                np.sum((candidates[:, None, :] - observed_x[None, :, :]) ** 2, axis=2), axis=1
            )
            candidates = candidates[distance > 1e-6]
        return candidates

    def _propose(self, study: Study) -> np.ndarray:
        observed_x, observed_y = self._observed(study)
        candidates = self._candidates(observed_x)
        at_candidates = (
            np.vstack([s.mean(candidates) for s in self._surfaces])
            if self._surfaces
            else np.empty((0, len(candidates)))
        )
        at_observed = (
            np.vstack([s.mean(observed_x) for s in self._surfaces])
            if self._surfaces
            else np.empty((0, len(observed_x)))
        )
        step = self._ensemble.propose(
            candidates,
            at_candidates,
            observed_x,
            observed_y,
            at_observed,
            minimize=study.direction == StudyDirection.MINIMIZE,
        )
        self.weights = dict(zip(self.labels(), (float(w) for w in step.weights[:-1]), strict=True))
        return np.asarray(candidates[step.index], dtype=float)

    @property
    def target_weight(self) -> float:
        """The weight the study's own observations had at the latest proposal."""
        return max(0.0, 1.0 - sum(self.weights.values()))
