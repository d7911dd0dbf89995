"""A finished run from elsewhere (a Trainer, an Optuna trial, an MLflow run), put in our terms.

Readers of each source fill a `ForeignRun` with the names the source uses. `screen` renames
what the vocabulary knows (names.py) and lists everything else as not published, with the
reason, so nothing is dropped silently. `as_trial` then gives the same private `TrialResult`
and study description that `gridpoint tune` hands to the anonymizer, so an imported run is
anonymized by the one anonymizer under the one allowlist.

Must never: publish, sign or store anything (sink.py does), or decide what may leave a node
beyond renaming (the anonymizer decides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gridpoint.integrations.names import public_metric, public_param, public_param_value
from gridpoint.schema import CurvePoint, ParamValue, SearchDimension, TaskDescriptor
from gridpoint.trainers.results import FineTuneResult, TrialResult
from gridpoint.trainers.study_config import ModelSpec, PrunerSpec, StudyConfig

__all__ = [
    "ForeignRun",
    "ModelRef",
    "NotPublished",
    "ScreenedRun",
    "as_trial",
    "screen",
    "unreadable",
]


@dataclass(frozen=True)
class ModelRef:
    """What may be said of the model a run trained: a public hub id, its family, its size."""

    public_id: str = ""
    family: str = ""
    num_parameters: int = 0
    lora: bool = False


@dataclass(frozen=True)
class NotPublished:
    """A parameter, metric or dimension left out of the record, and why."""

    kind: str  # "param" | "metric" | "search_space" | "objective"
    name: str
    reason: str


@dataclass(frozen=True)
class ForeignRun:
    """One finished run, with the source's own names (private until screened and anonymized)."""

    #: A stable identity of the run in its source ("mlflow:<run id>"); kept private.
    source_key: str
    #: The study (Optuna study, MLflow experiment, callback's study); private.
    study: str
    state: str  # "complete" | "pruned" | "failed"
    params: dict[str, object] = field(default_factory=dict)
    search_space: tuple[SearchDimension, ...] = ()
    curve: tuple[CurvePoint, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    objective_metric: str = ""
    objective_direction: str = ""
    finished_at: datetime | None = None
    #: The source's own trial number when it has one (Optuna); else the next free one is used.
    number: int | None = None
    #: Anything else worth keeping privately (run name, status text); never published.
    private: dict[str, str] = field(default_factory=dict)
    #: What the reader already knows it cannot publish (e.g. a text-valued attribute).
    unreadable: tuple[NotPublished, ...] = ()


@dataclass(frozen=True)
class ScreenedRun:
    """A run in vocabulary names, and what of it stays private."""

    params: dict[str, ParamValue]
    search_space: tuple[SearchDimension, ...]
    curve: tuple[CurvePoint, ...]
    metrics: dict[str, float]
    objective_metric: str
    objective_direction: str
    left_out: tuple[NotPublished, ...]


def _params(run: ForeignRun, left: list[NotPublished]) -> dict[str, ParamValue]:
    out: dict[str, ParamValue] = {}
    for name, value in sorted(run.params.items()):
        target = public_param(name)
        if target is None:
            left.append(NotPublished("param", name, "not in the hyperparameter vocabulary"))
            continue
        number = public_param_value(target, value)
        if number is None:
            left.append(NotPublished("param", name, f"{target} must be a finite number"))
        elif target in out:
            left.append(NotPublished("param", name, f"{target} is already given by another name"))
        else:
            out[target] = number
    return out


def _dimension(dim: SearchDimension, target: str) -> SearchDimension | None:
    if dim.kind != "categorical":
        return SearchDimension(target, dim.kind, dim.low, dim.high, dim.log, dim.step)
    choices = tuple(public_param_value(target, c) for c in dim.choices)
    if any(c is None for c in choices):
        return None
    return SearchDimension(
        target, "categorical", choices=tuple(c for c in choices if c is not None)
    )


def _space(run: ForeignRun, left: list[NotPublished]) -> tuple[SearchDimension, ...]:
    dims: dict[str, SearchDimension] = {}
    for dim in run.search_space:
        target = public_param(dim.name)
        if target is None:
            left.append(
                NotPublished("search_space", dim.name, "not in the hyperparameter vocabulary")
            )
            continue
        mapped = _dimension(dim, target)
        if mapped is None:
            left.append(NotPublished("search_space", dim.name, "a choice is not a number"))
        elif target not in dims:
            dims[target] = mapped
    return tuple(dims.values())


def _metrics(run: ForeignRun, left: list[NotPublished]) -> dict[str, float]:
    out: dict[str, float] = {}
    # Exact vocabulary names first, so `accuracy` wins over an alias like `val_acc`.
    for name, value in sorted(run.metrics.items(), key=lambda kv: public_metric(kv[0]) != kv[0]):
        target = public_metric(name)
        if target is None:
            left.append(NotPublished("metric", name, "not in the metric vocabulary"))
        elif not math.isfinite(value):
            left.append(NotPublished("metric", name, "not a finite number"))
        elif target in out:
            left.append(NotPublished("metric", name, f"{target} is already given by another name"))
        else:
            out[target] = float(value)
    return out


def _curve(run: ForeignRun, metric_names: dict[str, str]) -> tuple[CurvePoint, ...]:
    # One point per (metric, step), the last one logged: sources may log a step twice.
    points: dict[tuple[str, int], float] = {}
    for point in run.curve:
        target = metric_names.get(point.metric)
        # NaN and infinite points (a diverged step, a damaged store) carry no curve shape.
        if target is not None and point.step >= 0 and math.isfinite(point.value):
            points[(target, int(point.step))] = float(point.value)
    return tuple(
        CurvePoint(step, metric, value)
        for (metric, step), value in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )


def _curve_names(run: ForeignRun, left: list[NotPublished]) -> dict[str, str]:
    """Source curve metric -> vocabulary name; an exact name wins over an alias of it."""
    by_target: dict[str, list[str]] = {}
    for name in sorted({p.metric for p in run.curve}):
        target = public_metric(name)
        if target is None:
            if name not in run.metrics:  # reported once, with the final metrics
                left.append(NotPublished("metric", name, "not in the metric vocabulary"))
            continue
        by_target.setdefault(target, []).append(name)
    chosen: dict[str, str] = {}
    for target, names in by_target.items():
        keep = target if target in names else names[0]
        chosen[keep] = target
        for other in names:
            if other != keep and other not in run.metrics:
                left.append(
                    NotPublished("metric", other, f"{target} is already given by another name")
                )
    return chosen


def screen(run: ForeignRun) -> ScreenedRun:
    """The run in vocabulary names; everything else listed as not published, with why."""
    left: list[NotPublished] = list(run.unreadable)
    params = _params(run, left)
    space = _space(run, left)
    metrics = _metrics(run, left)
    curve_names = _curve_names(run, left)
    objective, direction = "", ""
    if run.objective_metric:
        target = public_metric(run.objective_metric)
        if target is None:
            left.append(
                NotPublished("objective", run.objective_metric, "not in the metric vocabulary")
            )
        else:
            objective, direction = target, run.objective_direction
    return ScreenedRun(
        params=params,
        search_space=space,
        curve=_curve(run, curve_names),
        metrics=metrics,
        objective_metric=objective,
        objective_direction=direction,
        left_out=tuple(left),
    )


def as_trial(
    run: ForeignRun, screened: ScreenedRun, number: int, task: TaskDescriptor, model: ModelRef
) -> tuple[TrialResult, StudyConfig]:
    """The private trial and study description `tune` would hand the anonymizer for this run."""
    result = FineTuneResult(
        curve=list(screened.curve),
        metrics=dict(screened.metrics),
        steps=max((p.step for p in screened.curve), default=0),
        samples_seen=0,
        train_seconds=0.0,
        num_parameters=model.num_parameters,
        trainable_parameters=0,
        device="",
        precision="",
        stopped_early=run.state == "pruned",
    )
    trial = TrialResult(
        study_name=run.study,
        number=number,
        state=run.state,
        params=dict(screened.params),
        run=result,
        task=task,
        curve=list(screened.curve),
    )
    # A study description with no pipeline and no file: only what the anonymizer reads of it
    # (name for pseudonyms, search space, objective, model) comes from the run.
    study = StudyConfig(
        path=Path(),
        pipeline="",
        name=run.study,
        task=task.type,
        language=task.language,
        trials=1,
        seed=0,
        model=ModelSpec(public_id=model.public_id, lora=model.lora),
        objective_metric=screened.objective_metric,
        objective_direction=screened.objective_direction,
        eval_interval=1,
        search_space=screened.search_space,
        pruner=PrunerSpec(type="none"),
    )
    return trial, study


def unreadable(exc: BaseException) -> str:
    """Why a damaged run (a corrupt file or row, a value nested thousands deep) is skipped."""
    if isinstance(exc, RecursionError):
        return "unreadable: a value nested too deeply"
    first = (str(exc).strip().splitlines() or [""])[0][:120]
    return f"unreadable: {type(exc).__name__}{': ' + first if first else ''}"
