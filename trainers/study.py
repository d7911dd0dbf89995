"""A tuning study: Optuna proposes hyperparameters, each trial is a fine-tuning run.

Studies live in an Optuna RDB storage (resuming a study by name continues it; other
processes, on this machine or others sharing a PostgreSQL storage, may join it as workers).
Trials run one per device at a time, in parallel when several devices are given. Each
finished trial — complete, pruned (with its partial curve) or failed — is handed to the
`on_trial` sink, and each complete one's model to `keep_model`; those calls are serialized
(never two at once), so the sink needs no locking. trainers never decides where results go.
Before any trial is created the model is loaded once (check_model): a model that cannot load
(an unknown model_type, a hub id not in the cache) stops the run in one line and costs the
study no trial. A live trial beats Optuna's heartbeat and its process holds the study's
worker lock (study_workers.py); a run that starts alone fails every trial still RUNNING at
once (their processes are gone); beside other live workers it fails only trials whose
heartbeat stopped, never a live one. Ctrl-C once stops after the current trials and keeps
everything done; twice aborts, recording the trial it cut short as failed.

In privacy mode (config.privacy) a StudyAccountant (trainers/privacy/accounting.py) plans
each trial's noise before it trains: DP-SGD's, and the released evaluation values' (the only
values the sampler, the pruner and the trial's curve ever see). With `publish = "best"` the
number of trials is drawn (Poisson, mean the trials asked for) and sampled at random, so that
each trial is the same mechanism: what "repeat and publish the best" is accounted as.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from gridpoint.errors import ConfigError, TrainerError
from gridpoint.schema import CurvePoint, TaskDescriptor
from gridpoint.trainers.descriptor import describe_data
from gridpoint.trainers.devices import check_devices
from gridpoint.trainers.finetune import FineTuneSettings, finetune
from gridpoint.trainers.models import LoadedModel, load_model
from gridpoint.trainers.pipeline import load_data
from gridpoint.trainers.results import TrainingDiverged, TrialResult
from gridpoint.trainers.saved_model import TrainedModel, saved_method
from gridpoint.trainers.search_space import distributions_of
from gridpoint.trainers.study_config import StudyConfig
from gridpoint.trainers.study_storage import HEARTBEAT_SECONDS, study_storage
from gridpoint.trainers.study_workers import study_workers
from gridpoint.trainers.tasks import task_type

if TYPE_CHECKING:
    from gridpoint.trainers.privacy.accounting import StudyAccountant
    from gridpoint.trainers.privacy.release import EvaluationRelease

__all__ = [
    "Search",
    "StudySummary",
    "check_model",
    "failure_reason",
    "run_study",
    "study_pruner",
    "trial_model",
    "trial_settings",
]

OnTrial = Callable[[TrialResult], None]
KeepModel = Callable[[TrialResult, TrainedModel], None]


@dataclass(frozen=True)
class Search:
    """The Optuna sampler and pruner a study runs with, and the seed its samplers take."""

    sampler: Any
    pruner: Any
    seed: int = 0


#: Builds the search once the task is described (priors are chosen by task), given the
#: sampler and pruner the study would run with otherwise.
SearchFactory = Callable[[TaskDescriptor, Search], Search]


@dataclass(frozen=True)
class StudySummary:
    """What one run of a study did: its trials, and the study's best over every run."""

    name: str
    trials: list[TrialResult]
    best: tuple[int, float] | None
    interrupted: bool
    task: TaskDescriptor
    #: In privacy mode, the epsilon the trials planned so far spend (None: not private).
    privacy_epsilon: float | None = None


def resume_seed(seed: int, finished: int) -> int:
    """The samplers' seed for a run of a study that already finished `finished` trials.

    Seeding every run with the study's own seed would replay the same proposals on each
    resume (trial 3 repeating trial 0); deriving it from the trials done continues the search
    yet keeps a run reproducible.
    """
    return (seed * 1_000_003 + finished) % 2**32


@contextmanager
def _quiet_heartbeat_warnings() -> Iterator[None]:
    """Optuna calls heartbeats experimental and meant for Study.optimize; we beat for ask/tell."""
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


@contextmanager
def _heartbeat(storage: Any, trial: Any) -> Iterator[None]:
    """Beats for trial every HEARTBEAT_SECONDS while the block runs (first beat at once)."""
    storage.record_heartbeat(trial._trial_id)
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            storage.record_heartbeat(trial._trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def study_pruner(config: StudyConfig) -> Any:
    """The Optuna pruner the study file's [pruner] section names."""
    import optuna

    spec = config.pruner
    if spec.type == "none":
        return optuna.pruners.NopPruner()
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if spec.type == "percentile":
        return optuna.pruners.PercentilePruner(
            spec.percentile, spec.n_startup_trials, spec.n_warmup_steps
        )
    return optuna.pruners.MedianPruner(spec.n_startup_trials, spec.n_warmup_steps)


@contextmanager
def _stop_after_current_trial(on_first: Callable[[], None]) -> Iterator[threading.Event]:
    """First SIGINT sets the event (and calls on_first); a second one raises KeyboardInterrupt."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        on_first()

    signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def run_study(
    config: StudyConfig,
    storage_url: str,
    *,
    n_trials: int | None = None,
    on_trial: OnTrial | None = None,
    search_for: SearchFactory | None = None,
    progress: bool = True,
    devices: str = "auto",
    worker: bool = False,
    on_interrupted: Callable[[int], None] = lambda _number: None,
    keep_model: KeepModel | None = None,
) -> StudySummary:
    """Runs (or resumes, or as a worker joins) the study; returns its trials run now and its best.

    devices: `auto`, `cpu`, one device or a list like `cuda:0,cuda:1`; one trial per device
    at a time. worker: join a study another process started
    (ConfigError if there is none); without n_trials it runs until the study has its trials.
    keep_model is called after on_trial for each complete trial, with its trained model,
    which is released when it returns.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = check_devices(devices)
    with _quiet_heartbeat_warnings():
        return _run(
            config, storage_url, names, n_trials, on_trial, search_for, progress, worker,
            on_interrupted, keep_model,
        )  # fmt: skip


def _run(
    config: StudyConfig,
    storage_url: str,
    names: list[str],
    n_trials: int | None,
    on_trial: OnTrial | None,
    search_for: SearchFactory | None,
    progress: bool,
    worker: bool,
    on_interrupted: Callable[[int], None],
    keep_model: KeepModel | None,
) -> StudySummary:
    import optuna

    if worker and config.privacy is not None:
        raise ConfigError(
            "--worker: a private study is accounted by the one process that runs it; "
            "use --devices to run its trials on several devices"
        )
    storage = study_storage(storage_url, on_interrupted)
    if worker:
        try:
            study = optuna.load_study(study_name=config.name, storage=storage)
        except KeyError:
            raise ConfigError(
                f"--worker: this node's study storage has no study {config.name!r} yet; "
                "start it with `gridpoint tune STUDY` first, then add workers"
            ) from None
    train, evaluation = load_data(config)
    check_model(config, train)
    task = describe_data(config.task, config.language, train)
    if not worker:
        study = optuna.create_study(
            study_name=config.name,
            storage=storage,
            load_if_exists=True,
            direction="maximize" if config.objective_direction == "maximize" else "minimize",
        )
    with study_workers(
        storage_url, config.name, lambda: _fail_running(study, on_interrupted)
    ) as alone:
        if not alone:
            # Beside live workers, a RUNNING trial whose heartbeat stopped belongs to a run
            # that was killed; a live one, another worker's, beats and is left alone.
            optuna.storages.fail_stale_trials(study)
        return _run_trials(
            config, study, storage, names, n_trials, train, evaluation, task, search_for,
            progress, worker, keep_model, on_trial,
        )  # fmt: skip


def _fail_running(study: Any, on_interrupted: Callable[[int], None]) -> None:
    """Fails every RUNNING trial: called only when no other process works on the study."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        if study._storage.set_trial_state_values(
            trial._trial_id, state=optuna.trial.TrialState.FAIL
        ):
            on_interrupted(trial.number)


def _load(config: StudyConfig, train: Any, seed: int) -> LoadedModel:
    kind = task_type(config.task)
    return load_model(
        config.model, kind.num_labels(train), kind.texts(train), seed, task=config.task
    )


def trial_model(config: StudyConfig, train: Any, params: dict[str, Any], seed: int) -> LoadedModel:
    """A trial's model: the study's, loaded with the trial's seed, its dropout set when the
    study searches `dropout` (what `tune` and the Ray Tune integration train)."""
    loaded = _load(config, train, seed)
    if "dropout" in params:
        _set_dropout(loaded.model, float(params["dropout"]))
    return loaded


def check_model(config: StudyConfig, train: Any) -> None:
    """Loads the study's model once and lets it go: ModelLoadError before any trial exists."""
    _load(config, train, config.seed)


def _run_trials(
    config: StudyConfig,
    study: Any,
    storage: Any,
    names: list[str],
    n_trials: int | None,
    train: Any,
    evaluation: Any,
    task: TaskDescriptor,
    search_for: SearchFactory | None,
    progress: bool,
    worker: bool,
    keep_model: KeepModel | None,
    on_trial: OnTrial | None,
) -> StudySummary:
    import optuna
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    done = sum(t.state.is_finished() for t in study.trials)
    # Workers started together would replay each other's proposals from one seed.
    seed = resume_seed(config.seed, done) ^ (int.from_bytes(os.urandom(4)) if worker else 0)
    privacy = config.privacy
    best = privacy is not None and privacy.publish == "best"
    search = Search(optuna.samplers.TPESampler(seed=seed), study_pruner(config), seed)
    if best:
        if search_for is not None:
            raise ConfigError(
                "privacy.publish = 'best' needs independent trials: --warm-start adapts "
                "its proposals to earlier trials; leave it out"
            )
        search = Search(optuna.samplers.RandomSampler(seed=seed), optuna.pruners.NopPruner(), seed)
    if search_for is not None:
        search = search_for(task, search)
    study.sampler, study.pruner = search.sampler, search.pruner
    claims = _Claims(study, n_trials, config.trials)
    accountant = None
    if privacy is not None:
        from gridpoint.trainers.privacy.accounting import StudyAccountant, draw_trials

        planned = claims.planned
        if best:
            # The mechanism's number of runs is random: it is drawn here, never chosen.
            claims = _Claims(study, draw_trials(planned), config.trials, fixed=True)
        accountant = StudyAccountant(privacy, planned)
    results: list[TrialResult] = []
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=False,
    )
    # on_trial and keep_model write the node's store: one at a time, whatever the devices.
    sink = threading.Lock()
    failures: list[BaseException] = []

    with (
        bar,
        _stop_after_current_trial(
            lambda: bar.console.print("stopping after the current trial(s) (Ctrl-C again to abort)")
        ) as stop,
    ):
        study_task = bar.add_task(f"study {config.name}", total=claims.planned)

        def work(on: str) -> None:
            try:
                while not stop.is_set() and not failures and claims.take():
                    result, trained = _run_trial(
                        study, storage, config, train, evaluation, task, bar, on, accountant
                    )
                    with sink:
                        results.append(result)
                        if on_trial:
                            on_trial(result)
                        if keep_model and trained is not None:
                            keep_model(result, trained)
                    del trained
                    bar.advance(study_task)
            except BaseException as exc:
                failures.append(exc)

        if len(names) == 1:
            work(names[0])
        else:
            threads = [
                threading.Thread(target=work, args=(name,), name=f"trials-{name}", daemon=True)
                for name in names
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        if failures:
            raise failures[0]
    results.sort(key=lambda r: r.number)
    spent = accountant.epsilon() if accountant is not None else None
    return StudySummary(config.name, results, _study_best(study), stop.is_set(), task, spent)


class _Claims:
    """How many more trials this run starts: n_trials of its own, or up to the study's total."""

    def __init__(
        self, study: Any, n_trials: int | None, total: int, *, fixed: bool = False
    ) -> None:
        import optuna

        self._study, self._total, self._lock = study, total, threading.Lock()
        self._left = n_trials
        if fixed:  # exactly n_trials, whatever the study's total (a drawn number of trials)
            self.planned = n_trials or 0
            return
        self._states = (*(s for s in optuna.trial.TrialState if s.is_finished()),
                        optuna.trial.TrialState.RUNNING)  # fmt: skip
        counted = len(study.get_trials(deepcopy=False, states=self._states))
        self.planned = n_trials if n_trials is not None else max(0, total - counted)

    def take(self) -> bool:
        with self._lock:
            if self._left is not None:
                if self._left <= 0:
                    return False
                self._left -= 1
                return True
            # Other threads or workers start trials too: the storage says how many exist.
            counted = len(self._study.get_trials(deepcopy=False, states=self._states))
            return counted < self._total


def trial_settings(
    config: StudyConfig, params: dict[str, Any], seed: int, device: str
) -> FineTuneSettings:
    """A trial's fine-tuning settings: its parameters (fixed and proposed), the study's rest."""
    return FineTuneSettings(
        learning_rate=float(params["learning_rate"]),
        batch_size=int(params["batch_size"]),
        epochs=int(params["epochs"]),
        warmup_ratio=float(params["warmup_ratio"]),
        weight_decay=float(params["weight_decay"]),
        eval_interval=config.eval_interval,
        max_length=config.model.max_length,
        seed=seed,
        lora_rank=int(params["lora_rank"]) if config.model.lora else None,
        device=device,
        task=config.task,
        gradient_accumulation=config.gradient_accumulation,
        gradient_checkpointing=config.gradient_checkpointing,
        head_only=config.trainable == "head",
    )


def _run_trial(
    study: Any,
    storage: Any,
    config: StudyConfig,
    train: Any,
    evaluation: Any,
    task: TaskDescriptor,
    bar: Any,
    device: str,
    accountant: StudyAccountant | None = None,
) -> tuple[TrialResult, TrainedModel | None]:
    import optuna

    # The sampler proposes every searched parameter; the rest keep their fixed defaults.
    trial = study.ask(fixed_distributions=distributions_of(config.search_space))
    params: dict[str, Any] = {**config.fixed_params(), **trial.params}
    trial_task = bar.add_task(f"  trial {trial.number} ({device})", total=None)
    partial: list[CurvePoint] = []

    def on_eval(step: int, metrics: dict[str, float]) -> bool:
        partial.extend(CurvePoint(step, k, v) for k, v in sorted(metrics.items()))
        trial.report(metrics[config.objective_metric], step)
        return bool(trial.should_prune())

    def on_step(step: int, total: int) -> None:
        bar.update(trial_task, completed=step, total=total)

    settings = trial_settings(config, params, config.seed + trial.number, device)
    release: EvaluationRelease | None = None
    loaded: LoadedModel | None = None
    with _heartbeat(storage, trial):
        try:
            if accountant is not None:
                settings, release = _private_trial(
                    accountant, settings, len(train), len(evaluation)
                )
            loaded = trial_model(config, train, params, settings.seed)
            run = finetune(
                loaded, train, evaluation, settings, on_eval=on_eval, on_step=on_step,
                release=release,
            )  # fmt: skip
        except (TrainerError, KeyboardInterrupt):
            # Aborted (a second Ctrl-C) or impossible: recorded now, never left RUNNING.
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except Exception as exc:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            failed = TrialResult(
                config.name,
                trial.number,
                "failed",
                params,
                None,
                task,
                error=f"{exc.__class__.__name__}: {exc}",
                curve=partial,
                failure=failure_reason(exc),
            )
            return failed, None
        finally:
            if trial_task in bar.task_ids:
                bar.remove_task(trial_task)
        if run.stopped_early:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return TrialResult(
                config.name, trial.number, "pruned", params, run, task, curve=run.curve
            ), None
        study.tell(trial, run.metrics[config.objective_metric])
    result = TrialResult(config.name, trial.number, "complete", params, run, task, curve=run.curve)
    labels = tuple(getattr(train, "label_names", ()))
    return result, TrainedModel(loaded.model, loaded.processor, saved_method(loaded.model), labels)


def _private_trial(
    accountant: StudyAccountant, settings: FineTuneSettings, train_rows: int, eval_rows: int
) -> tuple[FineTuneSettings, EvaluationRelease]:
    """A trial's settings with its DP-SGD noise, and its release of evaluation values.

    The noise is planned (and charged) for the trial's whole run: the steps and evaluations
    its batch size and epochs give, whether or not it is pruned before.
    """
    from gridpoint.trainers.privacy.dpsgd import poisson_schedule
    from gridpoint.trainers.privacy.release import EvaluationRelease

    spec = accountant.spec
    if spec.training:
        # Exactly the sampling and the steps Opacus will run.
        sample_rate, per_epoch = poisson_schedule(train_rows, settings.batch_size)
        steps = settings.epochs * per_epoch
    else:
        sample_rate = 1.0
        micro = math.ceil(train_rows / settings.batch_size)
        steps = settings.epochs * math.ceil(micro / settings.gradient_accumulation)
    # An evaluation every eval_interval steps before the last, and one at the end.
    releases = (steps - 1) // settings.eval_interval + 1
    noise = accountant.plan_trial(sample_rate, steps, releases)
    settings = replace(
        settings,
        dp_noise_multiplier=noise.training,
        dp_max_grad_norm=spec.max_grad_norm,
    )
    return settings, EvaluationRelease(spec, noise.evaluation, eval_rows)


def _set_dropout(model: Any, p: float) -> None:
    """Every dropout layer of the model drops with probability p (the searched `dropout`)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def failure_reason(exc: BaseException) -> str:
    """The public reason of a failure, when it says something about the hyperparameters
    ("" when it says nothing about them: a bug, a missing file)."""
    if isinstance(exc, TrainingDiverged):
        return "diverged"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "out-of-memory"
    return ""


def _study_best(study: Any) -> tuple[int, float] | None:
    """The study's best trial over every run so far: (number, objective value)."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None
    return int(best.number), float(best.value)
