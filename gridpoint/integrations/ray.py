"""Ray Tune: a gridpoint study's trials on a Ray cluster, each published as `tune`'s are.

    from gridpoint.integrations.ray import run_study
    summary = run_study("study.toml", home="~/gridpoint", address="auto", warm_start=True)

The driver (on the node's machine) calls the study's private pipeline once, describes the
data, and hands the datasets to the trials through Ray's object store. Ray Tune proposes
through `OptunaSearch` with the study's search: TPE, or with warm_start the node's own
`WarmStartSearch` (node/tuning/warm_search.py, the one `tune --warm-start` uses: the same
priors, transfer sampler, curve pruner and report, saved beside the study). Stopping early
is a Ray scheduler's job, so the study's pruner runs as PrunerScheduler (ray_pruner.py).
Each trial fine-tunes on whichever node Ray places it (one GPU each with gpus_per_trial,
else CPU), its model built as `tune` builds it (trainers/study.py: trial_model), and
reports every evaluation; the driver hands each finished trial, complete, pruned or failed,
to the node's publishing service (node/publishing/service.py) as a typed private run, the
way `tune` does: the same anonymizer, signer and store, and a failed trial published only
with a public failure reason ("diverged", "out-of-memory"), else kept private.

Ray Tune's per-trial cost is kept small: trial actors are reused (each worker imports torch
once), a worker imports only ray_trial.py (the trial; not the store, Optuna or this module),
and Ray's CSV and TensorBoard loggers are off (its JSON results and experiment state stay
under node_home/ray).

What does not map: Ray tells OptunaSearch's study a stopped trial's last value as complete
(the records say "pruned"); trial numbers are the node's (the next free ones of the study),
not Optuna's; models are not kept (they stay on the Ray workers).

Must never publish a trial but through the publishing service, or ship the pipeline's data
anywhere but to the cluster's own workers. Every Ray node needs gridpoint[train,ray]
installed and the base model at the same path (or in its hub cache).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune import Callback
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from gridpoint.errors import ConfigError
from gridpoint.integrations.ray_pruner import PrunerScheduler
from gridpoint.integrations.ray_trial import (
    DONE,
    METRICS,
    NODE,
    OBJECTIVE,
    RUN,
    STEP,
    TrialFailed,
    run_trial,
)
from gridpoint.integrations.sink import open_home
from gridpoint.node.home import NodeHome
from gridpoint.node.publishing.service import PublishingService
from gridpoint.node.store.base import ModelRef, PrivateRun, RunDetail
from gridpoint.node.store.query_filter import parse_filter
from gridpoint.node.store.sql_store import open_store
from gridpoint.node.study_reports import WarmStartReport, save_report
from gridpoint.node.tuning.study_run import study_model
from gridpoint.node.tuning.warm_search import WarmStartSearch
from gridpoint.schema import CurvePoint, ParamValue, TaskDescriptor
from gridpoint.trainers.study_config import StudyConfig

__all__ = ["RayStudySummary", "RayTrial", "TrialFailed", "run_study"]


@dataclass(frozen=True)
class RayTrial:
    """One trial of the study run on Ray, as the node keeps it."""

    number: int
    state: str  # "complete" | "pruned" | "failed"
    params: dict[str, ParamValue]
    #: The trial's metrics when it completed (none for a pruned or failed trial).
    metrics: dict[str, float]
    #: Its record's id, None when it stayed private (a failure that says nothing public).
    record_id: str | None
    ray_trial: str
    error: str = ""


@dataclass(frozen=True)
class RayStudySummary:
    """What a Ray Tune run of a study did: each trial's fate, and the best complete one."""

    name: str
    trials: tuple[RayTrial, ...]
    best: tuple[int, float] | None
    task: TaskDescriptor
    #: The warm start's report (priors used and left out, weights at the end), when asked.
    warm_start: WarmStartReport | None


def run_study(
    study: str | Path,
    *,
    home: str | Path | NodeHome | None = None,
    address: str | None = None,
    trials: int | None = None,
    max_concurrent: int = 2,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    warm_start: bool = False,
    warm_start_filter: str = "",
    db: str | None = None,
) -> RayStudySummary:
    """Runs the study file's trials on the Ray cluster at address (None: `ray.init()`'s
    default: RAY_ADDRESS, else a local Ray); returns what was published."""
    from gridpoint.trainers.descriptor import describe_data
    from gridpoint.trainers.pipeline import load_data
    from gridpoint.trainers.search_space import distributions_of
    from gridpoint.trainers.study import Search, study_pruner
    from gridpoint.trainers.study_config import load_study_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    node_home = open_home(home)
    config = load_study_config(Path(study).expanduser())
    count = trials if trials is not None else config.trials
    if count < 1 or max_concurrent < 1:
        raise ConfigError("trials and max_concurrent must be at least 1")
    if warm_start_filter and not warm_start:
        raise ConfigError("warm_start_filter selects prior studies; it goes with warm_start")
    where = parse_filter(warm_start_filter) if warm_start_filter else None
    train, evaluation = load_data(config)
    task = describe_data(config.task, config.language, train)
    model = study_model(config)
    # Ray trials start in any order on any node: each run its own seed, like `tune --worker`.
    seed = config.seed ^ int.from_bytes(os.urandom(4))
    search = Search(optuna.samplers.TPESampler(seed=seed), study_pruner(config), seed)
    mode = "max" if config.objective_direction == "maximize" else "min"
    store = open_store(node_home.db_url(db))
    try:
        warm = (
            WarmStartSearch(store, node_home, config, model, where, lambda _: None)
            if warm_start
            else None
        )
        if warm is not None:
            search = warm(task, search)
        if not ray.is_initialized():
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, study=config, train=train, evaluation=evaluation),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )
        numbers = [p.trial_number for p in store.list_private_runs(config.name)]
        publisher = _Publisher(PublishingService(node_home, store), config, task, model,
                               run_id=uuid.uuid4().hex[:12], first=max(numbers, default=-1) + 1)  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=OBJECTIVE,
                mode=mode,
                search_alg=ConcurrencyLimiter(
                    OptunaSearch(space=distributions_of(config.search_space),
                                 sampler=search.sampler, metric=OBJECTIVE, mode=mode),
                    max_concurrent=max_concurrent,
                ),
                scheduler=PrunerScheduler(search.pruner, config.objective_direction),
                num_samples=count,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"gridpoint-{publisher.run_id}",
                storage_path=str(node_home.path / "ray"),
                callbacks=[publisher, JsonLoggerCallback()],  # type: ignore[no-untyped-call]
                verbose=0,
            ),
        )  # fmt: skip
        with _without_result_files():
            tuner.fit()
    finally:
        store.close()
    report = warm.report() if warm is not None else None
    if report is not None:
        # Kept beside the study for the UI's Study page, as `tune --warm-start` keeps it.
        saved_at = datetime.now(UTC).isoformat(timespec="seconds")
        save_report(node_home.path, config.name, replace(report, saved_at=saved_at))
    done = sorted(publisher.trials, key=lambda t: t.number)
    scored = [(t.number, t.metrics[config.objective_metric]) for t in done
              if t.state == "complete" and config.objective_metric in t.metrics]  # fmt: skip
    best = (max if mode == "max" else min)(scored, key=lambda s: s[1]) if scored else None
    return RayStudySummary(config.name, tuple(done), best, task, report)


@contextmanager
def _without_result_files() -> Iterator[None]:
    """Ray Tune without its default CSV and TensorBoard loggers (no TensorBoard import, no
    two more files per trial written at every report): the JSON one, which Ray's result grid
    reads, is given explicitly; gridpoint's records hold the curves."""
    key = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


class _Publisher(Callback):
    """A Ray Tune callback, in the driver: gathers each trial's curve, and at its end hands
    it to the publishing service as a private run (numbered from first, in finishing order)."""

    def __init__(
        self,
        publishing: PublishingService,
        config: StudyConfig,
        task: TaskDescriptor,
        model: ModelRef,
        *,
        run_id: str,
        first: int,
    ) -> None:
        self._publishing: PublishingService | None = publishing
        self._config, self._task, self._model = config, task, model
        self.run_id, self._next = run_id, first
        self._curves: dict[str, list[CurvePoint]] = {}
        self.trials: list[RayTrial] = []

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:  # fmt: skip
        if DONE in result or METRICS not in result:
            return
        curve = self._curves.setdefault(trial.trial_id, [])
        curve.extend(CurvePoint(int(result[STEP]), k, float(v))
                     for k, v in sorted(result[METRICS].items()))  # fmt: skip

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:  # fmt: skip
        last = trial.last_result or {}
        self._publish(trial, "complete" if last.get(DONE) else "pruned", last)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                       **info: Any) -> None:  # fmt: skip
        error = _error_of(trial)
        self._publish(trial, "failed", trial.last_result or {}, error)

    def _publish(self, trial: Any, state: str, last: dict[str, Any],
                 error: TrialFailed | None = None) -> None:  # fmt: skip
        if self._publishing is None:
            raise ConfigError("a restored Ray Tune experiment cannot publish: run the study again")
        config, facts = self._config, dict(last.get(RUN, {}))
        metrics = {k: float(v) for k, v in last.get(METRICS, {}).items()}
        if state != "complete":
            metrics = {}
        params: dict[str, ParamValue] = {**config.fixed_params(), **trial.config}
        number, self._next = self._next, self._next + 1
        run = PrivateRun(
            study_name=config.name,
            trial_number=number,
            detail=RunDetail(
                state=state,
                params=params,
                search_space=config.search_space,
                curve=tuple(self._curves.pop(trial.trial_id, [])),
                metrics=metrics,
                objective_metric=config.objective_metric,
                objective_direction=config.objective_direction,
                task=self._task,
                model=replace(self._model, num_parameters=int(facts.get("num_parameters", 0))),
                error=error.error if error else "",
                failure=error.failure if error else "",
                source=f"ray:{self.run_id}:{trial.trial_id}",
                study_file=str(config.path),
                pipeline=config.pipeline,
                device=str(last.get("device", "")),
                precision=str(facts.get("precision", "")),
                samples_per_second=facts.get("samples_per_second"),
                trainable_parameters=facts.get("trainable_parameters"),
                finished_at=datetime.now(UTC),
                extra={"ray_trial": trial.trial_id, NODE: str(last.get(NODE, ""))},
            ),
        )
        published = self._publishing.publish(run)
        self.trials.append(
            RayTrial(number, state, params, metrics, published.record_id, trial.trial_id,
                     run.detail.error)
        )  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its callbacks into the experiment's state on disk: never the publishing
        # service, which holds the node's signing key.
        return {**self.__dict__, "_publishing": None}


def _error_of(trial: Any) -> TrialFailed:
    """Why a trial failed: its worker's TrialFailed, else (its process died) what Ray says."""
    try:
        exc = trial.get_pickled_error()
    except Exception:  # an error Ray could not pickle: only its text was kept
        exc = None
    cause = getattr(exc, "cause", exc)
    if isinstance(cause, TrialFailed):
        return cause
    if isinstance(exc, BaseException):
        from gridpoint.trainers.study import failure_reason

        return TrialFailed(f"{type(cause).__name__}: {cause}", failure_reason(cause))
    return TrialFailed("the Ray trial failed with no error kept", "")
