"""`gridpoint tune` as a service: run (or resume, or join) a study and publish each trial.

run_tune() loads the study file, resolves a kept model to start from, and runs the study on
the trainers (trainers/study.py) once. Each finished trial comes back as a typed private run
to the publishing service (node/publishing/service.py): anonymized and signed into the catalog, kept
in full privately, in one transaction; each complete trial's model is kept when it ranks among
the study's best. With a warm start the search comes from warm_search.py, and its report is
kept beside the study (node/study_reports.py). The command (node/cli/tune.py) parses, calls
run_tune once and prints the TuneOutcome; what happens during the run reaches it through
`TuneEvents`.

torch and friends are imported inside run_tune, never by the daemon. Must never print (the
caller's TuneEvents does), nor publish or store a trial but through the publishing service.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gridpoint.errors import ConfigError
from gridpoint.node.artifacts.keep import start_from_artifact
from gridpoint.node.artifacts.store import ArtifactStore, NewArtifact
from gridpoint.node.home import NodeHome
from gridpoint.node.publishing.service import PublishingService
from gridpoint.node.store.base import ModelRef, PrivateRun, RunDetail
from gridpoint.node.store.query_filter import parse_filter
from gridpoint.node.store.sql_store import normalize_db_url, open_store
from gridpoint.node.study_reports import WarmStartReport, save_report
from gridpoint.node.tuning.privacy import charged, guarantee_of, private_mode
from gridpoint.node.tuning.warm_search import WarmStartSearch
from gridpoint.schema import ParamValue, PrivacyGuarantee
from gridpoint.schema.vocabulary import public_hub_id

if TYPE_CHECKING:
    from gridpoint.trainers.results import TrialResult
    from gridpoint.trainers.saved_model import TrainedModel
    from gridpoint.trainers.study_config import StudyConfig

__all__ = ["TuneEvents", "TuneOutcome", "TuneRequest", "TunedTrial", "run_tune", "study_model"]


@dataclass(frozen=True)
class TuneRequest:
    """What `tune` was asked to do."""

    home: NodeHome
    study_file: Path
    db: str | None = None
    #: Trials to run now (None: up to the study file's `trials`).
    trials: int | None = None
    devices: str = "auto"
    #: The flag devices came from, for messages (`--devices`, or the older `--device`).
    devices_flag: str = "--devices"
    worker: bool = False
    warm_start: bool = False
    #: With warm_start: a catalog filter the prior studies must match ("" for all).
    prior_filter: str = ""
    progress: bool = True


class TuneEvents(Protocol):
    """What the caller is told while the study runs."""

    def warm_start(self, report: WarmStartReport) -> None:
        """The priors found, once the task is known and before the first trial."""

    def notice(self, line: str) -> None:
        """Something the user should know now (a failed trial, a trial recorded as failed)."""


@dataclass(frozen=True)
class TunedTrial:
    """One trial run now, as the command reports it."""

    number: int
    state: str
    params: dict[str, ParamValue]
    #: The trial's metrics when it completed (none for a pruned or failed trial).
    metrics: dict[str, float]
    samples_per_second: float | None
    device: str | None
    precision: str | None
    record_id: str | None


@dataclass(frozen=True)
class TuneOutcome:
    """What one run of `tune` did."""

    study: str
    #: The study file's `trials`: the study's total.
    planned: int
    objective_metric: str
    trials: tuple[TunedTrial, ...]
    #: The study's best trial over every run so far: (number, objective value).
    best: tuple[int, float] | None
    #: Stopped early on request (Ctrl-C once).
    interrupted: bool
    #: What the study was warm-started from (None when it was not asked to be).
    warm_start: WarmStartReport | None
    #: A private study's guarantee, as its records state it, and the epsilon its
    #: accountant says this run spent (None: not private).
    privacy: PrivacyGuarantee | None = None
    privacy_spent: float | None = None

    @property
    def published(self) -> int:
        return sum(t.record_id is not None for t in self.trials)


def run_tune(request: TuneRequest, events: TuneEvents) -> TuneOutcome:
    """Runs the study the request names and publishes its trials; see the module docstring."""
    from gridpoint.trainers.devices import check_devices
    from gridpoint.trainers.study import run_study
    from gridpoint.trainers.study_config import load_study_config

    home = request.home
    config = load_study_config(request.study_file)
    if request.trials is not None and request.trials < 1:
        raise ConfigError("--trials must be at least 1")
    if request.prior_filter and not request.warm_start:
        raise ConfigError("--from selects prior studies; it goes with --warm-start")
    where = parse_filter(request.prior_filter) if request.prior_filter else None
    # Checked before the store opens or the pipeline runs: a wrong device trains nothing.
    check_devices(request.devices, request.devices_flag)
    studies_url = normalize_db_url(home.studies_url(request.db))
    if request.worker and studies_url.startswith("sqlite"):
        events.notice(
            "warning: --worker on SQLite: workers share one file and must run on this machine; "
            "use --devices for more devices here, --db postgresql://... for other machines"
        )
    store = open_store(home.db_url(request.db))
    try:
        artifacts = ArtifactStore(home, store)
        # model = { artifact = "ID" }: the kept folder, and its record as every trial's parent.
        config, parents = start_from_artifact(artifacts, config)
        config = private_mode(home, config)
        model = study_model(config)
        trials = _Trials(PublishingService(home, store, artifacts), config, model, parents, events)
        warm = (
            WarmStartSearch(store, home, config, model, where, events.warm_start)
            if request.warm_start
            else None
        )
        # A private study is charged to its pipeline's budget before any trial runs.
        with charged(home, store, config) as spent:
            summary = run_study(
                config,
                studies_url,
                n_trials=request.trials,
                on_trial=trials.publish,
                search_for=warm,
                progress=request.progress,
                devices=request.devices,
                worker=request.worker,
                on_interrupted=trials.interrupted,
                keep_model=trials.keep_model,
            )
            trials.finish()
            spent[0] = summary.privacy_epsilon
    finally:
        store.close()
    report = warm.report() if warm is not None else None
    if report is not None:
        # Kept beside the study for the UI's Study page (weights at the end).
        saved_at = datetime.now(UTC).isoformat(timespec="seconds")
        save_report(home.path, config.name, replace(report, saved_at=saved_at))
    return TuneOutcome(
        study=summary.name,
        planned=config.trials,
        objective_metric=config.objective_metric,
        trials=tuple(trials.tuned(t) for t in summary.trials),
        best=summary.best,
        interrupted=summary.interrupted,
        warm_start=report,
        privacy=guarantee_of(config),
        privacy_spent=summary.privacy_epsilon,
    )


def study_model(config: StudyConfig) -> ModelRef:
    """The model a study trains, as its records say it: public hub id, family, and which of
    its weights train (the warm start takes priors that trained the same ones)."""
    from gridpoint.trainers.models import model_family_and_public_id

    family, public_id = model_family_and_public_id(config.model)
    return ModelRef(public_id, family, lora=config.model.lora, head_only=config.trainable == "head")


class _Trials:
    """The study's sink: each finished trial to the publishing service, its model kept."""

    def __init__(
        self,
        publishing: PublishingService,
        config: StudyConfig,
        model: ModelRef,
        parents: tuple[str, ...],
        events: TuneEvents,
    ) -> None:
        self._publishing, self._config, self._events = publishing, config, events
        self._model, self._parents = model, parents
        self._records: dict[int, str] = {}
        self._privacy = guarantee_of(config)
        # publish = "best": every trial is held until the study ends, then only the best
        # is published (the others are kept privately).
        self._best_only = config.privacy is not None and config.privacy.publish == "best"
        self._held: list[TrialResult] = []

    def publish(self, trial: TrialResult) -> None:
        if self._best_only:
            self._held.append(trial)
            return
        self._publish(trial)

    def finish(self) -> None:
        """Publishes the best held trial (publish = "best") and keeps the rest privately."""
        config, held = self._config, self._held
        self._held = []
        scored = [
            (t.run.metrics[config.objective_metric], t)
            for t in held
            if t.state == "complete" and t.run and config.objective_metric in t.run.metrics
        ]
        sign = 1.0 if config.objective_direction == "maximize" else -1.0
        best = max(scored, key=lambda s: sign * s[0])[1] if scored else None
        for trial in held:
            if trial is best:
                self._publish(trial)
            else:
                self._publishing.keep_private(self._private_run(trial))

    def _publish(self, trial: TrialResult) -> None:
        published = self._publishing.publish(self._private_run(trial), parents=self._parents)
        if published.record_id is not None:
            self._records[trial.number] = published.record_id
        if trial.state == "failed":
            kept = (
                f"published as {trial.failure!r}"
                if published.record_id
                else "kept private, not published"
            )
            self._events.notice(f"trial {trial.number} failed: {trial.error} ({kept})")

    def keep_model(self, trial: TrialResult, trained: TrainedModel) -> None:
        from gridpoint.trainers.saved_model import save_trained

        config = self._config
        score = trial.run.metrics.get(config.objective_metric) if trial.run else None
        if trial.state != "complete" or score is None:
            return
        self._publishing.keep_model(
            lambda folder: save_trained(trained, folder),
            NewArtifact(
                kind="trial",
                record_id=self._records.get(trial.number),
                base_model=public_hub_id(self._model.public_id),
                method=trained.method,
                group=config.name,
                score=score,
                metric=config.objective_metric,
            ),
            keep=config.keep,
            direction=config.objective_direction,
        )

    def interrupted(self, number: int) -> None:
        self._events.notice(
            f"trial {number} was left running by an interrupted run; recorded it as failed"
        )

    def tuned(self, trial: TrialResult) -> TunedTrial:
        run = trial.run
        return TunedTrial(
            number=trial.number,
            state=trial.state,
            params=dict(trial.params),
            metrics=dict(run.metrics) if run and trial.state == "complete" else {},
            samples_per_second=round(run.samples_per_second, 1) if run else None,
            device=run.device if run else None,
            precision=run.precision if run else None,
            record_id=self._records.get(trial.number),
        )

    def _private_run(self, trial: TrialResult) -> PrivateRun:
        config, run = self._config, trial.run
        return PrivateRun(
            study_name=config.name,
            trial_number=trial.number,
            detail=RunDetail(
                state=trial.state,
                params=dict(trial.params),
                search_space=config.search_space,
                curve=tuple(trial.curve),
                metrics=dict(run.metrics) if run else {},
                objective_metric=config.objective_metric,
                objective_direction=config.objective_direction,
                task=trial.task,
                model=replace(self._model, num_parameters=run.num_parameters if run else 0),
                error=trial.error or "",
                failure=trial.failure,
                study_file=str(config.path),
                pipeline=config.pipeline,
                device=run.device if run else "",
                precision=run.precision if run else "",
                samples_per_second=run.samples_per_second if run else None,
                trainable_parameters=run.trainable_parameters if run else None,
                finished_at=datetime.now(UTC),
                privacy=self._privacy,
            ),
        )
