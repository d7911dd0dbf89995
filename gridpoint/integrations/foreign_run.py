"""A finished run from elsewhere (a Trainer, an Optuna trial, an MLflow run), put in our terms.

Readers of each source fill a `ForeignRun` with the names the source uses. `screen` renames
what the vocabulary knows (names.py) and lists everything else as not published, with the
reason, so nothing is dropped silently; so is a metric value outside its range (an accuracy
given as a percentage). `as_private_run` then gives the typed private run every source hands
the publishing service (node/publishing/service.py), so an imported run is anonymized by the one
anonymizer under the one allowlist.

Must never: publish, sign or store anything (sink.py does), or decide what may leave a node
beyond renaming (the anonymizer decides).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

from gridpoint.integrations.names import public_metric, public_param, public_param_value
from gridpoint.node.publishing.anonymize import METRIC_RANGES, in_range
from gridpoint.node.store.base import ModelRef, NotPublished, PrivateRun, RunDetail
from gridpoint.schema import CurvePoint, ParamValue, SearchDimension, TaskDescriptor

__all__ = [
    "ForeignRun",
    "ModelRef",
    "NotPublished",
    "ScreenedRun",
    "as_private_run",
    "screen",
    "unreadable",
]


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
        elif not in_range(target, float(value)):
            left.append(NotPublished("metric", name, _out_of_range(target)))
        else:
            out[target] = float(value)
    return out


def _out_of_range(target: str) -> str:
    low, high = METRIC_RANGES[target]
    return f"a value outside the range of {target} ({low:g} to {high:g})"


def _curve(
    run: ForeignRun, metric_names: dict[str, str], left: list[NotPublished]
) -> tuple[CurvePoint, ...]:
    # One point per (metric, step), the last one logged: sources may log a step twice.
    points: dict[tuple[str, int], float] = {}
    outside: dict[str, str] = {}
    for point in run.curve:
        target = metric_names.get(point.metric)
        # NaN and infinite points (a diverged step, a damaged store) carry no curve shape.
        if target is None or point.step < 0 or not math.isfinite(point.value):
            continue
        if not in_range(target, float(point.value)):
            outside[point.metric] = target
        else:
            points[(target, int(point.step))] = float(point.value)
    for name, target in sorted(outside.items()):
        left.append(NotPublished("metric", name, f"curve points with {_out_of_range(target)}"))
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
        curve=_curve(run, curve_names, left),
        metrics=metrics,
        objective_metric=objective,
        objective_direction=direction,
        left_out=tuple(left),
    )


def as_private_run(
    run: ForeignRun, screened: ScreenedRun, number: int, task: TaskDescriptor, model: ModelRef
) -> PrivateRun:
    """The typed private run of a screened run, numbered `number` in its study: what the
    publishing service anonymizes (the screened part) and keeps (all of it)."""
    return PrivateRun(
        study_name=run.study,
        trial_number=number,
        detail=RunDetail(
            state=run.state,
            params=dict(screened.params),
            search_space=screened.search_space,
            curve=screened.curve,
            metrics=dict(screened.metrics),
            objective_metric=screened.objective_metric,
            objective_direction=screened.objective_direction,
            task=task,
            model=model,
            source=run.source_key,
            finished_at=run.finished_at,
            not_published=screened.left_out,
            # The source's own names and values, beside the screened ones the anonymizer reads.
            extra={
                **run.private,
                "source_params": json.dumps(run.params, default=str, sort_keys=True),
                "source_metrics": json.dumps(run.metrics, default=str, sort_keys=True),
                "source_curve": json.dumps([list(p) for p in run.curve], default=str),
            },
        ),
    )


def unreadable(exc: BaseException) -> str:
    """Why a damaged run (a corrupt file or row, a value nested thousands deep) is skipped."""
    if isinstance(exc, RecursionError):
        return "unreadable: a value nested too deeply"
    first = (str(exc).strip().splitlines() or [""])[0][:120]
    return f"unreadable: {type(exc).__name__}{': ' + first if first else ''}"
