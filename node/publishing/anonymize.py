"""The anonymizer: turns a private run into the public RunRecord, by explicit allowlist.

What may leave is decided field by field by the node's [anonymizer] policy, and even then
only in forms that cannot carry private strings: hyperparameters and metrics by names from
fixed vocabularies, the task as buckets, the base model as a public hub id (a local path
never), the study and trial as keyed pseudonyms (node/pseudonyms.py), times as a month or quarter.
Trials (of `tune`, or brought in by the integrations) and federated runs take the same
allowlist; a federated run's curve is per round and names its members (node ids). A private
study's run (detail.privacy) holds released values only; its record states their guarantee.

Must never copy into a record: data rows or texts, label names, file paths, column names,
the study's own name, host or user names, environment variables, exception text.
"""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime

from gridpoint.errors import RecordError
from gridpoint.node.config import AnonymizerConfig
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.node.store.base import ModelRef, PrivateRun
from gridpoint.schema import BaseModelInfo, CurvePoint, RunRecord, SearchDimension
from gridpoint.schema.vocabulary import public_hub_id
from gridpoint.trainers.study_config import KNOWN_PARAMS

__all__ = [
    "METRIC_RANGES",
    "PUBLIC_METRICS",
    "anonymize",
    "check_metric_ranges",
    "in_range",
    "period_of",
]

#: Metric names that may be published; anything else a trainer measures stays private.
PUBLIC_METRICS = frozenset({"accuracy", "f1", "eval_loss", "train_loss", "perplexity"})
#: The values each public metric can take: a value outside says the run measured something
#: else (a percentage, a sum) and would mislead every peer that learns from it.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "eval_loss": (0.0, math.inf),
    "train_loss": (0.0, math.inf),
    "perplexity": (1.0, math.inf),
}
_FAMILY = re.compile(r"[a-z][a-z0-9\-]{0,63}")
# Parameters whose values are counts (a federation's arrive as floats).
_COUNTS = ("batch_size", "epochs", "lora_rank")


def period_of(moment: datetime, granularity: str) -> str:
    """'YYYY-MM' of the month, or of the first month of the quarter."""
    month = moment.month if granularity == "month" else 3 * ((moment.month - 1) // 3) + 1
    return f"{moment.year:04d}-{month:02d}"


def in_range(metric: str, value: float) -> bool:
    """Whether a value is finite and one the metric can take (any finite value if unbounded)."""
    low, high = METRIC_RANGES.get(metric, (-math.inf, math.inf))
    return math.isfinite(value) and low <= value <= high


def check_metric_ranges(record: RunRecord) -> RunRecord:
    """The record, or RecordError naming the first metric value it cannot take."""
    values = [*(("metrics", k, v) for k, v in record.metrics.items()),
              *(("curve", p.metric, p.value) for p in record.curve)]  # fmt: skip
    for where, metric, value in values:
        if not in_range(metric, value):
            low, high = METRIC_RANGES[metric]
            raise RecordError(
                f"record field {where}.{metric}: {value:g} is outside the range of {metric} "
                f"({low:g} to {high:g})"
            )
    return record


def _model_info(policy: AnonymizerConfig, model: ModelRef) -> BaseModelInfo:
    return BaseModelInfo(
        base=public_hub_id(model.public_id) if policy.base_model else "",
        family=model.family if _FAMILY.fullmatch(model.family) else "",
        num_parameters=model.num_parameters,
        method=model.method,
    )


def anonymize(
    run: PrivateRun,
    *,
    secret: bytes,
    policy: AnonymizerConfig,
    parents: tuple[str, ...] = (),
) -> RunRecord:
    """The public record of a private run under policy.

    parents: the records the run derives from (the kept model a trial started from; the
    trials whose hyperparameters a federation used). The period is the month the run
    finished, else the current one.
    """
    detail = run.detail
    federated = detail.kind == "federated"
    curve: tuple[CurvePoint, ...] = ()
    if policy.curve:
        noise = policy.curve_noise if not federated else 0.0
        rng = random.Random(pseudonym(secret, "noise", run.study_name, str(run.trial_number)))
        curve = tuple(
            CurvePoint(s.step, s.metric, s.value + (rng.gauss(0, noise) if noise else 0.0))
            for s in detail.curve
            if s.metric in PUBLIC_METRICS
        )
    metrics = {}
    if policy.metrics and detail.state == "complete":
        metrics = {k: v for k, v in detail.metrics.items() if k in PUBLIC_METRICS}
    params: dict[str, float | int | str | bool] = {}
    if policy.hyperparameters:
        params = {k: v for k, v in detail.params.items() if k in KNOWN_PARAMS}
        if federated:
            params = {k: int(v) if k in _COUNTS else v for k, v in params.items()}
            if not detail.model.lora:
                params.pop("lora_rank", None)
    space: tuple[SearchDimension, ...] = ()
    if policy.search_space:
        # The study file admits only known names; imported runs come through here too.
        space = tuple(d for d in detail.search_space if d.name in KNOWN_PARAMS)
    finished = detail.finished_at or datetime.now(UTC)
    return RunRecord(
        kind=detail.kind,
        study=pseudonym(secret, "federation" if federated else "study", run.study_name),
        trial=""
        if federated
        else pseudonym(secret, "trial", run.study_name, str(run.trial_number)),
        task=detail.task,
        model=_model_info(policy, detail.model),
        search_space=space,
        hyperparameters=params,
        curve=curve,
        metrics=metrics,
        status=detail.state,
        period=period_of(finished, policy.period),
        objective_metric=detail.objective_metric,
        objective_direction=detail.objective_direction,
        members=tuple(sorted(detail.members)),
        failure=detail.failure if detail.state == "failed" else "",
        parents=parents,
        privacy=detail.privacy,
        resumed_after_round=detail.resumed_after_round if federated else 0,
    )
