"""The anonymizer: turns a private trial into the public RunRecord, by explicit allowlist.

What may leave is decided field by field by the node's [anonymizer] policy, and even then
only in forms that cannot carry private strings: hyperparameters and metrics by names from
fixed vocabularies, the task as buckets, the base model as a public hub id (a local path
never), the study and trial as keyed pseudonyms, times as a month or quarter.

Must never copy into a record: data rows or texts, label names, file paths, column names,
the study's own name, host or user names, environment variables, exception text.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from datetime import UTC, datetime

from gridpoint.node.config import AnonymizerConfig
from gridpoint.node.store.query_filter import And, Comparison, FilterNode, Or, Value
from gridpoint.schema import (
    BaseModelInfo,
    CurvePoint,
    RunRecord,
    SearchDimension,
    TaskDescriptor,
)
from gridpoint.schema.vocabulary import public_hub_id
from gridpoint.trainers.results import TrialResult
from gridpoint.trainers.study_config import KNOWN_PARAMS, StudyConfig

__all__ = [
    "anonymize_federation",
    "anonymize_trial",
    "own_study_names",
    "period_of",
    "pseudonym",
]

#: Metric names that may be published; anything else a trainer measures stays private.
PUBLIC_METRICS = frozenset({"accuracy", "f1", "eval_loss", "train_loss", "perplexity"})
_FAMILY = re.compile(r"[a-z][a-z0-9\-]{0,63}")


def pseudonym(secret: bytes, kind: str, *parts: str) -> str:
    """A keyed pseudonym: 32 hex characters of HMAC-SHA256(secret, kind, parts)."""
    message = "\x00".join((kind, *parts)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def period_of(moment: datetime, granularity: str) -> str:
    """'YYYY-MM' of the month, or of the first month of the quarter."""
    month = moment.month if granularity == "month" else 3 * ((moment.month - 1) // 3) + 1
    return f"{moment.year:04d}-{month:02d}"


def _model_info(
    policy: AnonymizerConfig, public_model_id: str, family: str, num_parameters: int, lora: bool
) -> BaseModelInfo:
    return BaseModelInfo(
        base=public_hub_id(public_model_id) if policy.base_model else "",
        family=family if _FAMILY.fullmatch(family) else "",
        num_parameters=num_parameters,
        method="lora" if lora else "full",
    )


def anonymize_trial(
    trial: TrialResult,
    study: StudyConfig,
    *,
    model_family: str,
    public_model_id: str,
    secret: bytes,
    policy: AnonymizerConfig,
    now: datetime | None = None,
    parents: tuple[str, ...] = (),
) -> RunRecord:
    """The public record of one trial under policy; parents: the record of the kept model
    the trial started from, if any (lineage)."""
    run = trial.run
    curve: tuple[CurvePoint, ...] = ()
    if policy.curve:
        rng = random.Random(pseudonym(secret, "noise", study.name, str(trial.number)))
        curve = tuple(
            CurvePoint(
                s.step,
                s.metric,
                s.value + (rng.gauss(0, policy.curve_noise) if policy.curve_noise else 0.0),
            )
            for s in trial.curve
            if s.metric in PUBLIC_METRICS
        )
    metrics = {}
    if policy.metrics and run is not None and trial.state == "complete":
        metrics = {k: v for k, v in run.metrics.items() if k in PUBLIC_METRICS}
    params = {}
    if policy.hyperparameters:
        params = {k: v for k, v in trial.params.items() if k in KNOWN_PARAMS}
    space: tuple[SearchDimension, ...] = ()
    if policy.search_space:
        # The study file admits only known names; imported runs come through here too.
        space = tuple(d for d in study.search_space if d.name in KNOWN_PARAMS)
    return RunRecord(
        kind="trial",
        study=pseudonym(secret, "study", study.name),
        trial=pseudonym(secret, "trial", study.name, str(trial.number)),
        task=trial.task,
        model=_model_info(
            policy,
            public_model_id,
            model_family,
            run.num_parameters if run is not None else 0,
            study.model.lora,
        ),
        search_space=space,
        hyperparameters=params,
        curve=curve,
        metrics=metrics,
        status=trial.state,
        period=period_of(now or datetime.now(UTC), policy.period),
        objective_metric=study.objective_metric,
        objective_direction=study.objective_direction,
        failure=trial.failure if trial.state == "failed" else "",
        parents=parents,
    )


def anonymize_federation(
    *,
    federation: str,
    curve: list[tuple[int, dict[str, float]]],
    params: dict[str, float],
    members: list[str],
    task: TaskDescriptor,
    study: StudyConfig,
    lora: bool,
    model_family: str,
    public_model_id: str,
    num_parameters: int,
    secret: bytes,
    policy: AnonymizerConfig,
    now: datetime | None = None,
    parents: tuple[str, ...] = (),
) -> RunRecord:
    """The public record of a federated run: per-round aggregated metrics as its curve.

    parents are the records of the trials whose hyperparameters the federation used.
    """
    points = (
        tuple(
            CurvePoint(round_number, name, value)
            for round_number, metrics in curve
            for name, value in sorted(metrics.items())
            if name in PUBLIC_METRICS
        )
        if policy.curve
        else ()
    )
    final = curve[-1][1] if curve else {}
    hyper: dict[str, float | int] = {}
    if policy.hyperparameters:
        hyper = {
            k: (int(v) if k in ("batch_size", "epochs", "lora_rank") else v)
            for k, v in params.items()
            if k in KNOWN_PARAMS
        }
        if not lora:
            hyper.pop("lora_rank", None)
    return RunRecord(
        kind="federated",
        study=pseudonym(secret, "federation", federation),
        task=task,
        model=_model_info(policy, public_model_id, model_family, num_parameters, lora),
        hyperparameters=hyper,
        curve=points,
        metrics={k: v for k, v in final.items() if k in PUBLIC_METRICS} if policy.metrics else {},
        status="complete",
        period=period_of(now or datetime.now(UTC), policy.period),
        objective_metric=study.objective_metric,
        objective_direction=study.objective_direction,
        members=tuple(sorted(members)),
        parents=parents,
    )


_PSEUDONYM = re.compile(r"[0-9a-f]{32}")


def own_study_names(where: FilterNode | None, secret: bytes) -> FilterNode | None:
    """The filter with this node's study names in `study` comparisons turned into pseudonyms.

    Lets the owner write `study = 'tiny-sentiment'`; only the pseudonym is in any record, and
    only the rewritten filter is ever sent to a peer. A value already a pseudonym stays.
    """
    return None if where is None else _with_pseudonyms(where, secret)


def _with_pseudonyms(node: FilterNode, secret: bytes) -> FilterNode:
    if isinstance(node, And | Or):
        return type(node)(tuple(_with_pseudonyms(n, secret) for n in node.operands))
    if node.key != "study" or node.op not in ("=", "!=", "IN"):
        return node

    def mapped(value: Value) -> Value:
        if not isinstance(value, str) or _PSEUDONYM.fullmatch(value) or not value:
            return value
        return pseudonym(secret, "study", value)

    if isinstance(node.value, tuple):
        return Comparison(node.key, node.op, tuple(mapped(v) for v in node.value))
    return Comparison(node.key, node.op, mapped(node.value))
