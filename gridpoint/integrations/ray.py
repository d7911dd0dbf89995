"""Ray Tune: a gridpoint study's trials on a Ray cluster, each published as `tune`'s are.

    from gridpoint.integrations.ray import run_study
    summary = run_study("study.toml", home="~/gridpoint", address="auto", warm_start=True)

The driver (on the node's machine) calls the study's private pipeline once, describes the
data, and hands the datasets to the trials through Ray's object store. Ray Tune proposes
through `OptunaSearch` with the study's sampler: TPE, or with warm_start gridpoint's
WarmStartSampler over the priors in the node's catalog (chosen as `tune --warm-start` chooses
them). Stopping early is a Ray scheduler's job, so the study's pruner (the curve pruner over
the priors' curves, falling back on the study file's [pruner]) runs as PrunerScheduler
(ray_pruner.py). Each trial fine-tunes on whichever node Ray places it (one GPU each with
gpus_per_trial, else CPU) and reports every evaluation; the driver publishes each finished
trial through the sink (sink.py: the anonymizer, the signer and the private store that the
Optuna publisher and the importers use), so its record is the one `tune` would make.

What does not map: Ray tells OptunaSearch's study a stopped trial's last value as complete
(the records say "pruned": the trial never reported its final mark); trial numbers are the
node's (the next free ones of the study), not Optuna's; failed trials are not published
(sink.py publishes finished runs only); models are not kept (they stay on the Ray workers).

Must never publish a trial but through the sink, or ship the pipeline's data anywhere but to
the cluster's own workers. Every Ray node needs gridpoint[train,ray] installed and the base
model at the same path (or in its hub cache).
"""

from __future__ import annotations

import logging
import os
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune import Callback
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import ForeignRun, ModelRef
from gridpoint.integrations.ray_pruner import DONE, OBJECTIVE, STEP, PrunerScheduler
from gridpoint.integrations.sink import HomeSink, Outcome, open_home
from gridpoint.node.home import NodeHome
from gridpoint.schema import CurvePoint, TaskDescriptor
from gridpoint.trainers.study_config import StudyConfig

__all__ = ["RayStudySummary", "run_study"]

#: The keys under which a trial reports its metrics at each evaluation, and its Ray node.
METRICS = "gridpoint_metrics"
NODE = "ray_node"


@dataclass(frozen=True)
class RayStudySummary:
    """What a Ray Tune run of a study did: each trial's fate, and the best published one."""

    name: str
    outcomes: list[Outcome]
    best: tuple[int, float] | None
    task: TaskDescriptor
    #: The warm-start sampler's report (priors used and left out), when warm-started.
    warm_start: list[dict[str, Any]]


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
    from gridpoint.trainers.models import model_family_and_public_id
    from gridpoint.trainers.pipeline import load_data
    from gridpoint.trainers.search_space import distributions_of
    from gridpoint.trainers.study_config import load_study_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    node_home = open_home(home)
    config = load_study_config(Path(study).expanduser())
    count = trials if trials is not None else config.trials
    if count < 1 or max_concurrent < 1:
        raise ConfigError("trials and max_concurrent must be at least 1")
    train, evaluation = load_data(config)
    task = describe_data(config.task, config.language, train)
    family, public_id = model_family_and_public_id(config.model)
    sampler, pruner, report = _search(node_home, db, config, task, family, public_id, warm_start,
                                      warm_start_filter)  # fmt: skip
    mode = "max" if config.objective_direction == "maximize" else "min"
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    trainable = tune.with_resources(
        tune.with_parameters(_train, study=config, train=train, evaluation=evaluation),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )
    with HomeSink(node_home, db=db) as sink:
        model = ModelRef(public_id, family, lora=config.model.lora)
        publisher = _Publisher(sink, config, task, model, run_id=uuid.uuid4().hex[:12])
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=OBJECTIVE,
                mode=mode,
                search_alg=ConcurrencyLimiter(
                    OptunaSearch(space=distributions_of(config.search_space), sampler=sampler,
                                 metric=OBJECTIVE, mode=mode),
                    max_concurrent=max_concurrent,
                ),
                scheduler=PrunerScheduler(pruner, config.objective_direction),
                num_samples=count,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"gridpoint-{publisher.run_id}",
                storage_path=str(node_home.path / "ray"),
                callbacks=[publisher],
                verbose=0,
            ),
        )  # fmt: skip
        tuner.fit()
    outcomes = publisher.outcomes
    scored = [(o.number, v) for o, v in publisher.scores if o.number is not None]
    best = (max if mode == "max" else min)(scored, key=lambda s: s[1]) if scored else None
    return RayStudySummary(config.name, outcomes, best, task, report)


def _search(
    home: NodeHome,
    db: str | None,
    config: StudyConfig,
    task: TaskDescriptor,
    family: str,
    public_id: str,
    warm_start: bool,
    where: str,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """The sampler and pruner of the study (warm-started from the catalog when asked), and
    the warm-start report."""
    from gridpoint.node.pseudonyms import pseudonym
    from gridpoint.node.store.query_filter import parse_filter
    from gridpoint.node.store.sql_store import open_store
    from gridpoint.node.tuning.warm_start import choose_priors
    from gridpoint.trainers.study import study_pruner
    from gridpoint.trainers.transfer.pruner import CurvePruner
    from gridpoint.trainers.transfer.sampler import WarmStartSampler

    # Ray trials start in any order on any node: each run its own seed, like `tune --worker`.
    seed = config.seed ^ int.from_bytes(os.urandom(4))
    tpe, pruner = optuna.samplers.TPESampler(seed=seed), study_pruner(config)
    if not warm_start:
        return tpe, pruner, []
    store = open_store(home.db_url(db))
    try:
        choice = choose_priors(
            store,
            task=task,
            objective_metric=config.objective_metric,
            model_family=family,
            model_base=public_id,
            where=parse_filter(where) if where else None,
            exclude=(home.identity.node_id, pseudonym(home.secret, "study", config.name)),
            renames=config.warm_start.rename,
        )
    finally:
        store.close()
    sampler = WarmStartSampler(
        choice.priors, config.search_space, method=config.warm_start.method, seed=seed
    )
    curves = [c for m in sampler.used for c in m.curves if c]
    if config.warm_start.curve_pruning and curves:
        pruner = CurvePruner(curves, n_warmup_steps=config.pruner.n_warmup_steps, fallback=pruner)
    return (sampler if sampler.used else tpe), pruner, sampler.report()


def _train(params: dict[str, Any], *, study: StudyConfig, train: Any, evaluation: Any) -> None:
    """One trial on a Ray worker: fine-tunes with params, reports every evaluation."""
    from gridpoint.trainers.finetune import finetune
    from gridpoint.trainers.models import load_model
    from gridpoint.trainers.study import trial_settings
    from gridpoint.trainers.tasks import task_type

    # Each trial its own seed, the same whenever this trial runs again.
    seed = study.seed ^ zlib.crc32(tune.get_context().get_trial_id().encode())
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    settings = trial_settings(study, {**study.fixed_params(), **params}, seed, device)
    kind = task_type(study.task)
    loaded = load_model(study.model, kind.num_labels(train), kind.texts(train), settings.seed,
                        task=study.task)  # fmt: skip

    where = {"device": device, NODE: ray.get_runtime_context().get_node_id()}

    def on_eval(step: int, metrics: dict[str, float]) -> bool:
        tune.report(
            {OBJECTIVE: metrics[study.objective_metric], STEP: step, METRICS: metrics, **where}
        )
        return False  # the scheduler stops a trial it prunes

    run = finetune(loaded, train, evaluation, settings, on_eval=on_eval)
    tune.report({OBJECTIVE: run.metrics[study.objective_metric], STEP: run.steps,
                 METRICS: run.metrics, DONE: True, **where})  # fmt: skip


class _Publisher(Callback):
    """A Ray Tune callback, in the driver: gathers each trial's curve, publishes it at its end.

    Publishing goes through one HomeSink.add call (publish()), the one place to switch when
    the node gains its single publishing service.
    """

    def __init__(
        self,
        sink: HomeSink,
        config: StudyConfig,
        task: TaskDescriptor,
        model: ModelRef,
        *,
        run_id: str,
    ) -> None:
        self._sink: HomeSink | None = sink
        self._config, self._task, self._model = config, task, model
        self.run_id = run_id
        self._curves: dict[str, list[CurvePoint]] = {}
        self.outcomes: list[Outcome] = []
        self.scores: list[tuple[Outcome, float]] = []

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
        done = bool(last.get(DONE))
        run = ForeignRun(
            source_key=f"ray:{self.run_id}:{trial.trial_id}",
            study=self._config.name,
            state="complete" if done else "pruned",
            params=dict(trial.config),
            search_space=self._config.search_space,
            curve=tuple(self._curves.pop(trial.trial_id, [])),
            metrics=dict(last.get(METRICS, {})) if done else {},
            objective_metric=self._config.objective_metric,
            objective_direction=self._config.objective_direction,
            finished_at=datetime.now(UTC),
            private={
                "ray_trial": trial.trial_id,
                NODE: str(last.get(NODE, "")),
                "device": str(last.get("device", "")),
            },
        )
        outcome = self.publish(run)
        self.outcomes.append(outcome)
        if done:
            self.scores.append((outcome, float(last[OBJECTIVE])))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                       **info: Any) -> None:  # fmt: skip
        self._curves.pop(trial.trial_id, None)

    def publish(self, run: ForeignRun) -> Outcome:
        if self._sink is None:
            raise ConfigError("a restored Ray Tune experiment cannot publish: run the study again")
        return self._sink.add(run, self._task, self._model)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its callbacks into the experiment's state on disk: never the sink,
        # which holds the node's signing key.
        return {**self.__dict__, "_sink": None}
