"""Prior studies for a new study, chosen from this node's catalog (its own and synced records).

Trial records are grouped into prior studies by (signer, study pseudonym). A group is left
out, with the reason, when it cannot inform the new study: another task type, another base
model family, another fine-tuning method (full, LoRA or the head alone: their good learning
rates lie orders of magnitude apart), or no value of the new study's objective metric. What
remains is scored by how alike its task descriptor is to the new task (the weight it starts
with) and handed to trainers as PriorStudy objects (their curves only where the number of
labels matches: the curve pruner compares curves value by value); the sampler then maps them
onto the search space and says what else it could not use. At most MAX_PRIOR_STUDIES are
weighed, the most alike first, no signer's many pushing the others' out; one signer's studies
left out for one reason share one row of the report: what a warm start costs must not grow
with what peers publish.
Nothing here leaves the node and private runs are never read.

A prior published by a differentially private study carries its signed guarantee: its
released accuracies had Gaussian noise, and the sampler is told how much (`released_noise`),
so that it trusts such a prior less and shows its epsilon in the report; one whose guarantee
no noise could meet is left out.

`from_catalog()` is the Python entry point for teams that keep their own Optuna code.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridpoint.errors import TrainerError
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.query_filter import (
    And,
    Comparison,
    FilterNode,
    OrderBy,
    parse_filter,
)
from gridpoint.schema import PrivacyGuarantee, RunRecord, TaskDescriptor
from gridpoint.schema.vocabulary import SIZE_BUCKETS

if TYPE_CHECKING:
    from gridpoint.trainers.transfer.priors import PriorStudy
    from gridpoint.trainers.transfer.sampler import WarmStartSampler

__all__ = [
    "PriorChoice",
    "PriorSource",
    "choose_priors",
    "from_catalog",
    "released_noise",
    "task_similarity",
]

#: Trial records read from the catalog for one warm start, at most, and their bytes: a record
#: may carry up to 256 KiB of curves, and decoded it takes about nine times as much memory.
MAX_PRIOR_RECORDS = 100_000
MAX_PRIOR_BYTES = 32 * 2**20
#: Prior studies one warm start weighs, at most, the most alike first (`_preferred`): the
#: sampler's set-up and each of its proposals grow with the number of priors (400 one-trial
#: priors: 2.4 s to build, 0.2 s a proposal), and a peer may publish thousands.
MAX_PRIOR_STUDIES = 100
#: Trials of one prior study, inside the new study's space, that the sampler fits the prior's
#: surface on, at most (WarmStartSampler's max_prior_trials: spread over their ranking).
MAX_PRIOR_TRIALS = 100
#: The evaluation rows assumed behind a private prior's released accuracy, by its training
#: set's size bucket. A record never says how many rows its evaluation had (that would say
#: more about the dataset than the bucket does): assumed a fifth of the bucket's smallest
#: training set, and at least 100, on the cautious side (fewer rows: more noise, less trust).
ASSUMED_EVAL_ROWS = {
    "<1k": 100,
    "1k-10k": 200,
    "10k-100k": 2_000,
    "100k-1m": 20_000,
    ">1m": 200_000,
}


@dataclass(frozen=True)
class PriorSource:
    """Where a prior study comes from, as the report names it."""

    label: str
    study: str
    signer: str
    signer_name: str
    trials: int


@dataclass(frozen=True)
class PriorChoice:
    """Prior studies that may inform the new one, and those left out with their reason."""

    priors: list[PriorStudy]
    sources: dict[str, PriorSource]
    left_out: list[tuple[PriorSource, str]] = field(default_factory=list)


def task_similarity(a: TaskDescriptor, b: TaskDescriptor) -> float:
    """How alike two coarse task descriptors are, in (0, 1]; 1 when every bucket matches."""
    score = 1.0
    if a.num_labels != b.num_labels:
        score *= 0.5
    if a.size_bucket != b.size_bucket:
        apart = (
            abs(SIZE_BUCKETS.index(a.size_bucket) - SIZE_BUCKETS.index(b.size_bucket))
            if a.size_bucket in SIZE_BUCKETS and b.size_bucket in SIZE_BUCKETS
            else 2
        )
        score *= 0.7 if apart == 1 else 0.4
    if a.balance_bucket != b.balance_bucket:
        score *= 0.7
    if a.language != b.language:
        score *= 0.3
    if a.text_length_bucket != b.text_length_bucket:
        score *= 0.6
    return score


def choose_priors(
    store: CatalogStore,
    *,
    task: TaskDescriptor,
    objective_metric: str,
    model_family: str = "",
    model_base: str = "",
    method: str = "",
    where: FilterNode | None = None,
    exclude: tuple[str, str] | None = None,
    renames: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    max_studies: int = MAX_PRIOR_STUDIES,
) -> PriorChoice:
    """Groups the catalog's trial records of `task.type` into prior studies.

    method is the new study's fine-tuning method (gridpoint.schema.vocabulary.METHODS; ""
    takes every method); exclude is (signer, study pseudonym) of the study being tuned (its
    own trials are not priors of itself); names maps signer node ids to the names the report
    shows; max_studies: how many are weighed at most (`_preferred` says which). Studies left
    out share a row per signer and reason.
    """
    base = (
        Comparison("kind", "=", "trial"),
        Comparison("task.type", "=", task.type),
        Comparison("study", "!=", ""),
    )
    condition: FilterNode = And(base + ((where,) if where is not None else ()))
    groups, unread = _read_studies(store, condition)
    choice = PriorChoice([], {})
    if unread:
        choice.left_out.append(
            (
                PriorSource(f"{unread} records@catalog", "", "", "", unread),
                f"not read: past the {MAX_PRIOR_BYTES / 2**20:g} MiB of records a warm start "
                "reads (studies in pseudonym order; a private study cut there left out whole)",
            )
        )
    candidates, unfit = [], defaultdict(list)
    labels: set[str] = set()
    for (signer, study), records in sorted(groups.items()):
        if (signer, study) == exclude:
            continue
        name = (names or {}).get(signer, "")
        source = PriorSource(
            label=_unused(f"{study[:10]}@{name or signer[:10]}", labels),
            study=study,
            signer=signer,
            signer_name=name,
            trials=len(records),
        )
        kind, reason = _unfit(records, objective_metric, model_family, method)
        if reason:
            # A family is any name the peer chooses: one row for them all, not one for each.
            unfit[(signer, kind if kind == "family" else reason)].append((source, reason))
            continue
        similarity = task_similarity(records[0].task, task)
        if model_base and records[0].model.base and records[0].model.base != model_base:
            similarity *= 0.8
        candidates.append(_Candidate(source, records, similarity))
    for rows in (unfit[key] for key in sorted(unfit)):
        others = " (the others likewise)" if len({r for _, r in rows}) > 1 else ""
        choice.left_out.append((_together([s for s, _ in rows]), rows[0][1] + others))
    # Candidates are examined in the order of preference (a private one's noise calibrated:
    # RDP, milliseconds) until enough are usable; at most twice as many as are weighed.
    beyond: dict[str, dict[str, list[PriorSource]]] = defaultdict(lambda: defaultdict(list))
    examined = 0
    for candidate in _preferred(candidates, max_studies):
        signer = candidate.source.signer
        if len(choice.priors) >= max_studies:
            beyond[f"beyond the {max_studies} prior studies a warm start weighs"][signer].append(
                candidate.source
            )
            continue
        if examined >= 2 * max_studies:
            beyond[
                f"not weighed: {examined} studies were examined before it (a private one's "
                "noise calibrated), the most one warm start examines"
            ][signer].append(candidate.source)
            continue
        examined += 1
        noise = released_noise(candidate.records, objective_metric)
        guarantee = candidate.records[0].privacy
        if math.isinf(noise) and guarantee is not None:
            choice.left_out.append(
                (
                    candidate.source,
                    f"its values were released under epsilon {guarantee.epsilon:g} at delta "
                    f"{guarantee.delta:g}: noise too large to learn from",
                )
            )
            continue
        choice.priors.append(_prior(candidate, task, objective_metric, noise, renames or {}))
        choice.sources[candidate.source.label] = candidate.source
    choice.left_out.extend(
        (_together(sources), reason)
        for reason, by_signer in beyond.items()
        for _, sources in sorted(by_signer.items())
    )
    return choice


def _read_studies(
    store: CatalogStore, condition: FilterNode
) -> tuple[dict[tuple[str, str], list[RunRecord]], int]:
    """The matching trial records by (signer, study pseudonym), read in study order within
    MAX_PRIOR_BYTES, and how many matching records were not read. A private study the
    budget cut is left out whole: read in part, it would seem to have spent its budget on
    fewer releases, so less noisy than it is (an exact one gives the trials read)."""
    read = store.query(
        condition,
        limit=MAX_PRIOR_RECORDS,
        order_by=OrderBy("study", descending=False),
        max_bytes=MAX_PRIOR_BYTES,
    )
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for stored in read:
        groups[(stored.signer_id, stored.record.study)].append(stored.record)
    unread = store.count_records(condition) - len(read)
    if unread and read:
        cut = read[-1].record.study
        in_cut = [k for k in groups if k[1] == cut]
        whole = store.count_records(And((condition, Comparison("study", "=", cut))))
        private = any(r.privacy is not None for k in in_cut for r in groups[k])
        if private and whole > sum(len(groups[k]) for k in in_cut):
            for key in in_cut:
                unread += len(groups.pop(key))
    return groups, unread


def _unused(label: str, taken: set[str]) -> str:
    """label, or label#2, #3... if taken (two studies' pseudonyms alike in their first
    characters, two peers of one name): the sampler's weights and the report key by it."""
    n, out = 1, label
    while out in taken:
        n += 1
        out = f"{label}#{n}"
    taken.add(out)
    return out


@dataclass(frozen=True)
class _Candidate:
    """A prior study that can inform the new one, before the cap on how many are weighed."""

    source: PriorSource
    records: list[RunRecord]
    similarity: float


def _unfit(records: list[RunRecord], metric: str, family: str, method: str) -> tuple[str, str]:
    """(kind, reason) a prior study cannot inform the new one (("", "") when it can)."""
    first = records[0]
    if family and first.model.family and first.model.family != family:
        return "family", f"base model family {first.model.family!r}, this study {family!r}"
    if method and first.model.method != method:
        return "method", f"fine-tuned {first.model.method!r}, this study {method!r}"
    if not any(r.status == "complete" and metric in r.metrics for r in records):
        return "metric", f"no complete trial reports {metric!r}"
    return "", ""


def _preferred(candidates: list[_Candidate], most: int) -> list[_Candidate]:
    """The candidates in the order they are weighed: the most alike first (the larger study
    at a tie, then by signer and pseudonym), but a signer's beyond its max(1, most // 5)
    most alike only after every other signer's, so that one signer's thousands of studies
    cannot push the others out."""

    def alike(c: _Candidate) -> tuple[float, int]:
        return -c.similarity, -len(c.records)

    share = max(1, most // 5)
    by_signer: dict[str, list[_Candidate]] = defaultdict(list)
    for candidate in sorted(candidates, key=alike):
        by_signer[candidate.source.signer].append(candidate)
    first = [c for own in by_signer.values() for c in own[:share]]
    rest = [c for own in by_signer.values() for c in own[share:]]
    return sorted(first, key=alike) + sorted(rest, key=alike)


def _together(sources: list[PriorSource]) -> PriorSource:
    """One report row for one signer's studies left out for one reason (a signer may publish
    thousands: the report stays as long as its signers and reasons)."""
    if len(sources) == 1:
        return sources[0]
    name, signer = sources[0].signer_name, sources[0].signer
    return PriorSource(
        label=f"{len(sources)} studies@{name or signer[:10]}",
        study="",
        signer=signer,
        signer_name=name,
        trials=sum(s.trials for s in sources),
    )


def _prior(
    candidate: _Candidate,
    task: TaskDescriptor,
    metric: str,
    noise: float,
    renames: Mapping[str, str],
) -> PriorStudy:
    """The candidate as the sampler takes it, its values released with `noise`."""
    from gridpoint.trainers.transfer.priors import PriorStudy, PriorTrial

    records, first = candidate.records, candidate.records[0]
    # A curve is compared step by step with this study's (the curve pruner): with another
    # number of labels its scale differs (chance accuracy, starting loss), and a 4-label
    # study's sound trials fell below 2-label priors' curves and were pruned. Its values
    # still count (the sampler compares ranks, never values across tasks).
    comparable = first.task.num_labels == task.num_labels
    trials = [
        PriorTrial(
            params=dict(r.hyperparameters),
            value=r.metrics[metric],
            curve=tuple((p.step, p.value) for p in r.curve if p.metric == metric)
            if comparable
            else (),
        )
        for r in records
        if r.status == "complete" and metric in r.metrics
    ]
    return PriorStudy(
        label=candidate.source.label,
        trials=tuple(trials),
        direction=_direction(first, metric),
        search_space=first.search_space,
        similarity=candidate.similarity,
        renames=dict(renames),
        noise=noise,
        epsilon=first.privacy.epsilon if first.privacy else None,
        delta=first.privacy.delta if first.privacy else None,
    )


def released_noise(records: Sequence[RunRecord], metric: str) -> float:
    """The standard deviation of the noise a private study's released `metric` values carry
    (0 for exact values), from what its records publish.

    The study's evaluation budget (its signed epsilon and delta) was spread over every
    release of every trial: calibrated here for as many alike releases as its records show
    (trials times evaluations of the longest curve). The sensitivity of an accuracy is
    1 / evaluation rows, with the rows assumed from the size bucket (ASSUMED_EVAL_ROWS). An
    estimate on the cautious side: trials that failed before publishing are not seen (they
    were charged too, so the noise was a little more), and the calibration is RDP's whatever
    accountant the study named. RDP's bound is the looser, so its noise is at least PLD's
    (over epsilon 0.1-100 and 1-1,000 releases, up to 11% more at delta 1e-5 and 18% at
    1e-3), and it takes milliseconds where a PLD took up to 29 s here: a peer's records ask
    for a calibration per study.
    Infinite when no noise multiplier up to 1e6 keeps within the guarantee.
    """
    from gridpoint.trainers.privacy.accounting import release_noise
    from gridpoint.trainers.privacy.spec import RELEASABLE_METRICS

    guarantee: PrivacyGuarantee | None = records[0].privacy if records else None
    if guarantee is None or guarantee.protected not in ("evaluation", "both"):
        return 0.0
    if metric not in RELEASABLE_METRICS:
        return 0.0
    evaluations = max((sum(1 for p in r.curve if p.metric == metric) for r in records), default=1)
    releases = len(records) * max(evaluations, 1)
    try:
        multiplier = release_noise(guarantee.epsilon, guarantee.delta, releases, "rdp")
    except TrainerError:
        return math.inf
    rows = ASSUMED_EVAL_ROWS.get(records[0].task.size_bucket, 100)
    return multiplier * RELEASABLE_METRICS[metric] / rows


def _direction(record: RunRecord, metric: str) -> str:
    if record.objective_metric == metric and record.objective_direction:
        return record.objective_direction
    return "minimize" if metric.endswith("loss") else "maximize"


def from_catalog(
    home: NodeHome | str | Path,
    search_space: Mapping[str, Any] | Sequence[Any],
    *,
    task: TaskDescriptor,
    objective_metric: str,
    filter: str = "",
    model_family: str = "",
    finetuning: str = "",
    method: str = "rgpe",
    seed: int | None = None,
) -> WarmStartSampler:
    """A WarmStartSampler over the priors this node's catalog holds for `task`; with
    `finetuning` ("full", "lora" or "head"), only studies that fine-tuned the same way.

    sampler = from_catalog("~/gridpoint", {"learning_rate": FloatDistribution(1e-5, 1e-3,
                           log=True)}, task=TaskDescriptor("text-classification"),
                           objective_metric="accuracy", filter="task.language = 'en'")
    """
    from gridpoint.node.store.sql_store import open_store
    from gridpoint.trainers.transfer.sampler import WarmStartSampler

    node_home = home if isinstance(home, NodeHome) else NodeHome(Path(home).expanduser())
    store = open_store(node_home.db_url())
    try:
        choice = choose_priors(
            store,
            task=task,
            objective_metric=objective_metric,
            model_family=model_family,
            method=finetuning,
            where=parse_filter(filter) if filter else None,
            names={p.node_id: p.name for p in store.list_peers()},
        )
    finally:
        store.close()
    return WarmStartSampler(
        choice.priors, search_space, method=method, seed=seed, max_prior_trials=MAX_PRIOR_TRIALS
    )
