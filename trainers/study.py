"""A tuning study: Optuna proposes hyperparameters, each trial is a fine-tuning run.

Studies live in an Optuna RDB storage (resuming a study by name continues it). Each
finished trial — complete, pruned (with its partial curve) or failed — is handed to the
`on_trial` sink, in order; trainers never decides where results go. Ctrl-C once stops after
the current trial and keeps everything done; twice aborts the current trial.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from gridpoint.errors import TrainerError
from gridpoint.schema import CurvePoint, TaskDescriptor
from gridpoint.trainers.descriptor import describe
from gridpoint.trainers.devices import check_device
from gridpoint.trainers.finetune import FineTuneSettings, finetune
from gridpoint.trainers.models import load_model
from gridpoint.trainers.pipeline import LabeledTexts, load_data
from gridpoint.trainers.results import TrainingDiverged, TrialResult
from gridpoint.trainers.search_space import distributions_of
from gridpoint.trainers.study_config import StudyConfig

__all__ = ["Search", "StudySummary", "run_study"]

OnTrial = Callable[[TrialResult], None]


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


def resume_seed(seed: int, finished: int) -> int:
    """The samplers' seed for a run of a study that already finished `finished` trials.

    Seeding every run with the study's own seed would replay the same proposals on each
    resume (trial 3 repeating trial 0); deriving it from the trials done continues the search
    yet keeps a run reproducible.
    """
    return (seed * 1_000_003 + finished) % 2**32


def _finished_and_interrupted(study: Any) -> tuple[int, list[int]]:
    """Trials finished so far, and those left RUNNING by a run that was killed."""
    import optuna

    running = optuna.trial.TrialState.RUNNING
    finished = sum(t.state.is_finished() for t in study.trials)
    return finished, [t.number for t in study.trials if t.state == running]


def _pruner(config: StudyConfig) -> Any:
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
    device: str = "auto",
    on_interrupted: Callable[[int], None] = lambda _number: None,
) -> StudySummary:
    """Runs (or resumes) the study; returns every trial run now and the study's best."""
    import optuna
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = check_device(device)
    train, evaluation = load_data(config)
    task = describe(config.task, config.language, train.texts, train.labels)
    study = optuna.create_study(
        study_name=config.name,
        storage=storage_url,
        load_if_exists=True,
        direction="maximize" if config.objective_direction == "maximize" else "minimize",
    )
    done, interrupted = _finished_and_interrupted(study)
    for number in interrupted:
        # Only one run drives a study at a time, so a RUNNING trial here was cut off (a
        # second Ctrl-C, a kill) and can never finish: record it as failed.
        study.tell(number, state=optuna.trial.TrialState.FAIL)
        on_interrupted(number)
    seed = resume_seed(config.seed, done + len(interrupted))
    search = Search(optuna.samplers.TPESampler(seed=seed), _pruner(config), seed)
    if search_for is not None:
        search = search_for(task, search)
    study.sampler, study.pruner = search.sampler, search.pruner
    planned = n_trials if n_trials is not None else max(0, config.trials - done)
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
    with (
        bar,
        _stop_after_current_trial(
            lambda: bar.console.print("stopping after this trial (Ctrl-C again to abort)")
        ) as stop,
    ):
        study_task = bar.add_task(f"study {config.name}", total=planned)
        for _ in range(planned):
            if stop.is_set():
                break
            result = _run_trial(study, config, train, evaluation, task, bar, device)
            results.append(result)
            if on_trial:
                on_trial(result)
            bar.advance(study_task)
    return StudySummary(config.name, results, _study_best(study), stop.is_set(), task)


def _run_trial(
    study: Any,
    config: StudyConfig,
    train: LabeledTexts,
    evaluation: LabeledTexts,
    task: TaskDescriptor,
    bar: Any,
    device: str,
) -> TrialResult:
    import optuna

    # The sampler proposes every searched parameter; the rest keep their fixed defaults.
    trial = study.ask(fixed_distributions=distributions_of(config.search_space))
    params: dict[str, Any] = {**config.fixed_params(), **trial.params}
    trial_task = bar.add_task(f"  trial {trial.number}", total=None)
    partial: list[CurvePoint] = []

    def on_eval(step: int, metrics: dict[str, float]) -> bool:
        partial.extend(CurvePoint(step, k, v) for k, v in sorted(metrics.items()))
        trial.report(metrics[config.objective_metric], step)
        return bool(trial.should_prune())

    def on_step(step: int, total: int) -> None:
        bar.update(trial_task, completed=step, total=total)

    settings = FineTuneSettings(
        learning_rate=float(params["learning_rate"]),
        batch_size=int(params["batch_size"]),
        epochs=int(params["epochs"]),
        warmup_ratio=float(params["warmup_ratio"]),
        weight_decay=float(params["weight_decay"]),
        eval_interval=config.eval_interval,
        max_length=config.model.max_length,
        seed=config.seed + trial.number,
        lora_rank=int(params["lora_rank"]) if config.model.lora else None,
        device=device,
    )
    try:
        loaded = load_model(config.model, len(train.label_names), train.texts, settings.seed)
        run = finetune(loaded, train, evaluation, settings, on_eval=on_eval, on_step=on_step)
    except TrainerError:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    except Exception as exc:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        bar.remove_task(trial_task)
        return TrialResult(
            config.name,
            trial.number,
            "failed",
            params,
            None,
            task,
            error=f"{exc.__class__.__name__}: {exc}",
            curve=partial,
            failure=_failure(exc),
        )
    finally:
        if trial_task in bar.task_ids:
            bar.remove_task(trial_task)
    if run.stopped_early:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        state = "pruned"
    else:
        study.tell(trial, run.metrics[config.objective_metric])
        state = "complete"
    return TrialResult(config.name, trial.number, state, params, run, task, curve=run.curve)


def _failure(exc: BaseException) -> str:
    """The public reason of a failure, when it says something about the hyperparameters."""
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
