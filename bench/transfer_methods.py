"""The methods bench/transfer_hpo.py compares, each driven through its own public interface.

Every method is an ask/tell searcher over the study's search space (floats on [0, 1], one per
hyperparameter column): `ask()` returns the point the method proposes, `tell(x, y)` hands back
the configuration actually evaluated (the bench snaps each proposal to the nearest unevaluated
one) and its value. Optuna samplers run in a real Optuna study: the asked trial carries the
proposal and is closed as failed, and the evaluated configuration is added as a complete trial,
so every sampler learns from exactly what was evaluated, as it would in a real study. Syne
Tune's schedulers run through `suggest()` / `on_trial_complete()`.

- random, tpe, gp: Optuna's RandomSampler, TPESampler (multivariate) and GPSampler, cold.
- ours, ours-cold: `gridpoint.WarmStartSampler` with the prior studies, and with none (the
  study's own model alone); what `gridpoint tune --warm-start` runs.
- ours-design: `gridpoint.WarmStartSampler(method="initial-design")`.
- ours-topk: `gridpoint.WarmStartSampler(design_steps=5)`: after the priors' consensus, each
  trusted prior's own best configuration, then the ensemble (the measured variant, Dec. 2026).
- ours-strict: `gridpoint.WarmStartSampler(beat_target=True)`; ours-fw:
  `gridpoint.WarmStartSampler(family_wise=True)` (the priors' chance test as one family);
  ours-inc: `gridpoint.WarmStartSampler(incumbent_test=True)` (the priors' weights shrink once
  their mean rates the study's best observation worse than half of the candidates);
  ours-nodecay: `gridpoint.WarmStartSampler(decay_from=0)` (the priors' weights never decayed:
  the default before 7 December 2026).
- metalearn-tpe: OptunaHub's MetaLearnTPESampler (Watanabe et al., IJCAI 2023) loaded with
  `optunahub.load_local_module` from a local copy of the optuna/optunahub-registry repository.
- st-zero-shot, st-bounding-box, st-quantile: Syne Tune's ZeroShotTransfer (with surrogates:
  the tasks share no configuration), BoundingBox around the priors' best configurations with
  Syne Tune's TPE inside, and the quantile-based surrogate searcher (CTS).

Heavy libraries are imported inside each factory: a run loads only what its methods need.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gridpoint.trainers.transfer.ensemble import TOPK_DESIGN_STEPS

#: Trials per prior study handed to the baselines whose cost grows with them (MetaLearnTPE
#: rebuilds a Parzen estimator of every source study at each proposal).
BASELINE_SOURCE_TRIALS = 1000


@dataclass(frozen=True)
class PriorTask:
    """One prior task as the methods receive it: named parameters and values (lower is better)."""

    label: str
    names: tuple[str, ...]
    x: np.ndarray  # n × len(names), on [0, 1] unless narrowed
    y: np.ndarray
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    #: Released values (a private study): the noise's standard deviation in y's units and
    #: the (epsilon, delta) of the release; 0 and None for exact values.
    noise: float = 0.0
    epsilon: float | None = None
    delta: float | None = None


@dataclass(frozen=True)
class Setting:
    """What a method is started with for one held-out task and seed."""

    names: tuple[str, ...]
    priors: Sequence[PriorTask]
    seed: int
    optunahub_registry: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Searcher(Protocol):
    def ask(self) -> np.ndarray: ...
    def tell(self, x: np.ndarray, y: float) -> None: ...


class OptunaSearcher:
    """A sampler in a real Optuna study (minimize) over floats on [0, 1]."""

    def __init__(self, sampler: Any, names: Sequence[str]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self._optuna = optuna
        self._names = tuple(names)
        self._space = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names}
        self._study = optuna.create_study(sampler=sampler)

    def ask(self) -> np.ndarray:
        trial = self._study.ask(self._space)
        point = np.array([trial.params[n] for n in self._names], dtype=float)
        self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        return point

    def tell(self, x: np.ndarray, y: float) -> None:
        params = {n: float(v) for n, v in zip(self._names, x, strict=True)}
        self._study.add_trial(
            self._optuna.trial.create_trial(params=params, distributions=self._space, value=y)
        )


class SyneTuneSearcher:
    """A Syne Tune scheduler driven by suggest / on_trial_complete."""

    def __init__(self, scheduler: Any, names: Sequence[str]) -> None:
        self._scheduler = scheduler
        self._names = tuple(names)
        self._next_id = 0

    def ask(self) -> np.ndarray:
        suggestion = self._scheduler.suggest()
        config = suggestion.config if suggestion is not None else {}
        return np.array([float(config.get(n, 0.5)) for n in self._names], dtype=float)

    def tell(self, x: np.ndarray, y: float) -> None:
        from syne_tune.backend.trial_status import Trial

        config = {n: float(v) for n, v in zip(self._names, x, strict=True)}
        trial = Trial(trial_id=self._next_id, config=config, creation_time=datetime.now())
        self._next_id += 1
        self._scheduler.on_trial_complete(trial, {"objective": y})


def prior_studies(setting: Setting) -> list[Any]:
    """The priors as gridpoint.PriorStudy objects, each with the search space it declared."""
    from gridpoint import PriorStudy, PriorTrial, SearchDimension

    studies = []
    for prior in setting.priors:
        low = prior.low or (0.0,) * len(prior.names)
        high = prior.high or (1.0,) * len(prior.names)
        space = tuple(
            SearchDimension(n, "float", lo, hi)
            for n, lo, hi in zip(prior.names, low, high, strict=True)
        )
        trials = tuple(
            PriorTrial(dict(zip(prior.names, map(float, row), strict=True)), float(value))
            for row, value in zip(prior.x, prior.y, strict=True)
        )
        studies.append(
            PriorStudy(
                prior.label,
                trials,
                direction="minimize",
                search_space=space,
                noise=prior.noise,
                epsilon=prior.epsilon,
                delta=prior.delta,
            )
        )
    return studies


def _optuna_sampler(build: Callable[[Setting], Any]) -> Callable[[Setting], Searcher]:
    return lambda setting: OptunaSearcher(build(setting), setting.names)


def _random(setting: Setting) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=setting.seed)


def _tpe(setting: Setting) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=setting.seed, multivariate=True)


def _gp(setting: Setting) -> Any:
    import optuna
    import torch

    torch.set_num_threads(1)
    return optuna.samplers.GPSampler(seed=setting.seed)


def _ours_with(*, cold: bool = False, **options: Any) -> Callable[[Setting], Any]:
    """`gridpoint.WarmStartSampler` on the setting's priors (none when cold) with `options`:
    every variant of ours is the public sampler with its own keyword arguments."""

    def make(setting: Setting) -> Any:
        import gridpoint

        priors = [] if cold else prior_studies(setting)
        return gridpoint.WarmStartSampler(
            priors, _unit_space(setting.names), seed=setting.seed, **options
        )

    return make


def _unit_space(names: Sequence[str]) -> dict[str, Any]:
    import optuna

    return {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names}


def _subsample(prior: PriorTask, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(prior.y) <= limit:
        return prior.x, prior.y
    keep = np.random.default_rng(seed).choice(len(prior.y), limit, replace=False)
    return prior.x[keep], prior.y[keep]


def _metalearn_tpe(setting: Setting) -> Any:
    import optuna
    import optunahub

    if setting.optunahub_registry is None:
        raise SystemExit("metalearn-tpe needs --optunahub-registry PATH (a local copy)")
    module = optunahub.load_local_module(
        "samplers/meta_learn_tpe", registry_root=str(setting.optunahub_registry)
    )
    sources = []
    for prior in setting.priors:
        x, y = _subsample(prior, BASELINE_SOURCE_TRIALS, setting.seed)
        space = _unit_space(prior.names)
        study = optuna.create_study()
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=dict(zip(prior.names, map(float, row), strict=True)),
                    distributions=space,
                    value=float(value),
                )
                for row, value in zip(x, y, strict=True)
            ]
        )
        sources.append(study)
    sampler = module.MetaLearnTPESampler(source_studies=sources, seed=setting.seed)
    # The registry's sampler was written for Optuna 4.1 and reads two of TPE's internals that
    # Optuna 5 changed: `_split_trials` lost its `constraints_enabled` argument, and
    # TPESampler sets `_gamma` on first use, which the source studies' samplers never reach
    # before the meta sampler reads it. Both shims keep its algorithm as published.
    from optuna.samplers._tpe.sampler import _split_trials, default_gamma

    def split_trials(study: Any, trials: Any, n_below: int, **_: Any) -> Any:
        return _split_trials(study, trials, n_below)

    sys.modules[module.MetaLearnTPESampler.__module__]._split_trials = split_trials

    for inner in (sampler._target_sampler, *sampler._source_samplers):
        if inner._gamma is None:
            inner._gamma = default_gamma
    return sampler


def _syne_space(names: Sequence[str]) -> dict[str, Any]:
    from syne_tune.config_space import uniform

    return {n: uniform(0.0, 1.0) for n in names}


def _syne_evaluations(setting: Setting) -> dict[str, Any]:
    import pandas as pd
    from syne_tune.optimizer.schedulers.transfer_learning.transfer_learning_task_evaluation import (
        TransferLearningTaskEvaluations,
    )

    space = _syne_space(setting.names)
    evaluations = {}
    for prior in setting.priors:
        # Syne Tune wants every prior in the study's own space: shared names only.
        shared = [n for n in setting.names if n in prior.names]
        columns = [prior.names.index(n) for n in shared]
        evaluations[prior.label] = TransferLearningTaskEvaluations(
            configuration_space={n: space[n] for n in shared},
            hyperparameters=pd.DataFrame(prior.x[:, columns], columns=shared),
            objectives_names=["objective"],
            objectives_evaluations=prior.y.reshape(-1, 1, 1, 1),
        )
    return evaluations


def _quiet_syne_tune() -> None:
    logging.getLogger("syne_tune").setLevel(logging.ERROR)


def _st_zero_shot(setting: Setting) -> Searcher:
    from syne_tune.config_space import Domain
    from syne_tune.optimizer.schedulers.transfer_learning.zero_shot import ZeroShotTransfer

    class ZeroShot(ZeroShotTransfer):  # type: ignore[misc]
        """Syne Tune 0.16's ZeroShotTransfer with two bugs of `use_surrogates=True` fixed.

        It reads `self.random_state` before setting it (AttributeError), and it draws new
        configurations for each prior task, so its ranks would compare different
        configurations. Here every task is imputed on the same seeded draw.
        """

        def __init__(self, **kwargs: Any) -> None:
            self._draw_seed = kwargs["random_seed"]
            self._drawn: list[dict[str, Any]] = []
            self._position = 0
            super().__init__(**kwargs)

        def _sample_random_config(self, config_space: dict[str, Any]) -> dict[str, Any]:
            if not self._drawn:
                # As many as Syne Tune draws per task (zero_shot.py), once.
                count = 10000 if len(config_space) >= 6 else 5 ** len(config_space)
                state = np.random.RandomState(self._draw_seed)
                self._drawn = [
                    {
                        k: v.sample(random_state=state) if isinstance(v, Domain) else v
                        for k, v in config_space.items()
                    }
                    for _ in range(count)
                ]
            config = self._drawn[self._position % len(self._drawn)]
            self._position += 1
            return config

    _quiet_syne_tune()
    scheduler = ZeroShot(
        config_space=_syne_space(setting.names),
        metric="objective",
        transfer_learning_evaluations=_syne_evaluations(setting),
        use_surrogates=True,
        random_seed=setting.seed,
    )
    return SyneTuneSearcher(scheduler, setting.names)


def _st_bounding_box(setting: Setting) -> Searcher:
    from syne_tune.optimizer.baselines import TPE
    from syne_tune.optimizer.schedulers.transfer_learning.bounding_box import BoundingBox

    _quiet_syne_tune()

    def inner(space: dict[str, Any], metric: str, do_minimize: bool, seed: int) -> Any:
        return TPE(space, metric=metric, do_minimize=do_minimize, random_seed=seed)

    scheduler = BoundingBox(
        scheduler_fun=inner,
        config_space=_syne_space(setting.names),
        metric="objective",
        transfer_learning_evaluations=_syne_evaluations(setting),
        random_seed=setting.seed,
    )
    return SyneTuneSearcher(scheduler, setting.names)


def _st_quantile(setting: Setting) -> Searcher:
    from syne_tune.optimizer.schedulers.single_objective_scheduler import (
        SingleObjectiveScheduler,
    )
    from syne_tune.optimizer.schedulers.transfer_learning.quantile_based.quantile_based_searcher import (  # noqa: E501
        QuantileBasedSurrogateSearcher,
    )

    _quiet_syne_tune()
    space = _syne_space(setting.names)
    searcher = QuantileBasedSurrogateSearcher(
        config_space=space,
        transfer_learning_evaluations=_syne_evaluations(setting),
        random_seed=setting.seed,
    )
    scheduler = SingleObjectiveScheduler(space, metric="objective", searcher=searcher)
    return SyneTuneSearcher(scheduler, setting.names)


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    warm: bool
    build: Callable[[Setting], Searcher]


METHODS = {
    m.name: m
    for m in (
        Method("random", "random search (Optuna)", False, _optuna_sampler(_random)),
        Method("tpe", "TPE (Optuna, multivariate)", False, _optuna_sampler(_tpe)),
        Method("gp", "GPSampler (Optuna)", False, _optuna_sampler(_gp)),
        Method(
            "ours-cold",
            "WarmStartSampler, no priors (ours)",
            False,
            _optuna_sampler(_ours_with(cold=True)),
        ),
        Method("st-zero-shot", "ZeroShotTransfer (Syne Tune)", True, _st_zero_shot),
        Method("st-bounding-box", "BoundingBox + TPE (Syne Tune)", True, _st_bounding_box),
        Method("st-quantile", "quantile-based CTS (Syne Tune)", True, _st_quantile),
        Method(
            "metalearn-tpe",
            "MetaLearnTPESampler (OptunaHub)",
            True,
            _optuna_sampler(_metalearn_tpe),
        ),
        Method(
            "ours-design",
            "WarmStartSampler, initial design (ours)",
            True,
            _optuna_sampler(_ours_with(method="initial-design")),
        ),
        Method(
            "ours-topk",
            "WarmStartSampler, priors' bests first (ours, design_steps=5)",
            True,
            _optuna_sampler(_ours_with(design_steps=TOPK_DESIGN_STEPS - 1)),
        ),
        Method(
            "ours-strict",
            "WarmStartSampler, priors must out-rank the study's own model (beat_target=True)",
            True,
            _optuna_sampler(_ours_with(beat_target=True)),
        ),
        Method(
            "ours-fw",
            "WarmStartSampler, family-wise chance test",
            True,
            _optuna_sampler(_ours_with(family_wise=True)),
        ),
        Method(
            "ours-inc",
            "WarmStartSampler, priors trusted while they rate the study's best well",
            True,
            _optuna_sampler(_ours_with(incumbent_test=True)),
        ),
        Method(
            "ours-nodecay",
            "WarmStartSampler, priors' weights never decayed (decay_from=0)",
            True,
            _optuna_sampler(_ours_with(decay_from=0)),
        ),
        Method("ours", "WarmStartSampler (ours, default)", True, _optuna_sampler(_ours_with())),
    )
}
