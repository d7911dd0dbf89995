"""What the Warm start page shows for one study: each run's prior studies (who signed them,
their trials, similarity, weight at the start and at the end, their share of the ensemble at
the end), what each contributed (the trials of this study that ran one of that prior's
configurations, found by comparing parameters with the prior's records in the catalog),
how each dimension of the study was matched in each prior (renamed, normalized name,
missing), what was left out and why, and a chart of the weights over the study's trials.

Reads the reports `tune --warm-start` saves (node/study_reports.py, typed there; only read
here). A run covers the trials started after the
previous report was saved and up to its own; its weights are drawn at its first trial (at the
start) and its last (at the end).

Must never write anything, nor read more than MAX_PRIOR_RECORDS records per prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from gridpoint.node.store.query_filter import And, Comparison
from gridpoint.node.study_reports import DimensionRow, WarmStartReport
from gridpoint.node.ui.context import UiContext
from gridpoint.node.ui.figures import Chart, axis, color_of, esc, integer_axis, layout
from gridpoint.node.ui.studies import StudyTrial, StudyView

__all__ = ["PriorRow", "WarmStartRun", "warm_start_runs"]

#: Most catalog records read per prior study to find its configurations.
MAX_PRIOR_RECORDS = 1_000


@dataclass(frozen=True)
class PriorRow:
    """One prior study of one run, used or left out."""

    label: str
    study: str
    signer: str
    signer_name: str
    trials: int
    used: bool
    similarity: float | None = None
    weight_start: float | None = None
    weight_end: float | None = None
    share_end: float | None = None
    notes: list[str] = field(default_factory=list)
    reason: str = ""
    #: This study's trials (of the run) that ran one of the prior's configurations.
    ran_its_configurations: list[int] = field(default_factory=list)
    #: How each dimension of the study was matched in the prior (empty for older reports).
    dimensions: list[DimensionRow] = field(default_factory=list)
    trials_left_out: int = 0
    values_clipped: int = 0

    @property
    def catalog_link(self) -> str:
        return "/?" + urlencode({"q": f"study = '{self.study}'"}) if self.study else ""


@dataclass(frozen=True)
class WarmStartRun:
    """One run of the study with --warm-start, as its report says."""

    number: int
    method: str
    saved_at: str
    trials: list[int]
    priors: list[PriorRow]
    study_weight: float | None
    prior_curves: int


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _saved(report: WarmStartReport) -> datetime | None:
    """When the report was saved, as Optuna's naive local times read."""
    try:
        at = datetime.fromisoformat(report.saved_at)
    except ValueError:
        return None
    return at.astimezone().replace(tzinfo=None) if at.tzinfo else at


def _key(params: dict[str, Any], names: list[str]) -> tuple[Any, ...] | None:
    """A configuration as comparable values (6 significant digits), or None if incomplete."""
    if not names or any(n not in params for n in names):
        return None
    return tuple(
        float(f"{params[n]:.6g}") if isinstance(params[n], int | float) else str(params[n])
        for n in names
    )


def _ran_configurations(ui: UiContext, study: str, trials: list[StudyTrial]) -> list[int]:
    names = sorted({k for t in trials for k in t.params})
    found = ui.store.query(
        And((Comparison("study", "=", study), Comparison("kind", "=", "trial"))),
        limit=MAX_PRIOR_RECORDS,
    )
    configurations = {_key(dict(s.record.hyperparameters), names) for s in found} - {None}
    return [t.number for t in trials if _key(t.params, names) in configurations]


def warm_start_runs(
    ui: UiContext, view: StudyView, reports: list[WarmStartReport]
) -> tuple[list[WarmStartRun], Chart | None]:
    """The study's warm-started runs, oldest first, and the chart of their weights."""
    runs = []
    previous: datetime | None = None
    for number, report in enumerate(reports, start=1):
        saved = _saved(report)
        # Reports are saved to the second: a trial's start is compared at that precision.
        trials = [
            t
            for t in view.trials
            if (started := t.started.replace(microsecond=0) if t.started else None) is not None
            and (previous is None or started > previous)
            and (saved is None or started <= saved)
        ]
        previous = saved or previous
        study_weight = _float(report.study_weight)
        shares = [v for v in map(_float, report.weights.values()) if v is not None]
        total = sum(shares) + (study_weight or 0.0)
        priors = []
        for row in report.priors:
            end = _float(report.weights.get(row.prior))
            priors.append(
                PriorRow(
                    label=row.prior,
                    study=row.study,
                    signer=row.signer,
                    signer_name=row.signer_name,
                    trials=row.trials,
                    used=row.used,
                    similarity=_float(row.similarity),
                    weight_start=_float(row.weight),
                    weight_end=end,
                    share_end=end / total if end is not None and total > 0 else None,
                    # A private prior's guarantee and noise, where its other notes are read.
                    notes=list(row.notes) + ([row.privacy] if row.epsilon is not None else []),
                    reason=row.reason,
                    ran_its_configurations=_ran_configurations(ui, row.study, trials)
                    if row.used and row.study
                    else [],
                    dimensions=list(row.dimensions),
                    trials_left_out=row.trials_left_out,
                    values_clipped=row.values_clipped,
                )
            )
        runs.append(
            WarmStartRun(
                number=number,
                method=report.method,
                saved_at=report.saved_at,
                trials=[t.number for t in trials],
                priors=priors,
                study_weight=study_weight,
                prior_curves=report.prior_curves,
            )
        )
    return runs, _weights_chart(runs)


def _weights_chart(runs: list[WarmStartRun]) -> Chart | None:
    """Each prior's weight (and the study's own) at the first and last trial of each run."""
    lines: dict[str, tuple[list[int], list[float | None]]] = {}
    for run in runs:
        if not run.trials:
            continue
        first, last = run.trials[0], run.trials[-1]
        for prior in run.priors:
            if prior.used:
                xs, ys = lines.setdefault(
                    f"{prior.signer_name or prior.signer[:12]} · {prior.study[:12]}", ([], [])
                )
                xs += [first, last]
                ys += [prior.weight_start, prior.weight_end]
        if run.study_weight is not None:
            xs, ys = lines.setdefault("this study's own trials", ([], []))
            xs.append(last)
            ys.append(run.study_weight)
    if not lines:
        return None
    traces = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": esc(name),
            "x": xs,
            "y": ys,
            "line": {"color": color_of(i), "simplify": False},
            "hovertemplate": "trial %{x}<br>weight %{y:.3f}<extra>" + esc(name) + "</extra>",
        }
        for i, (name, (xs, ys)) in enumerate(lines.items())
    ]
    numbers = [x for xs, _ in lines.values() for x in xs]
    return Chart(
        "weights",
        {
            "data": traces,
            "layout": layout(
                "Weights over the trials (at each run's first and last trial)",
                integer_axis("trial", numbers),
                axis("weight in the ensemble", rangemode="tozero"),
            ),
        },
    )
