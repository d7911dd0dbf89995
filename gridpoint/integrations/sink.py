"""Where runs from elsewhere enter a node home: anonymized, signed, published; kept in full privately.

The same three steps `gridpoint tune` takes for each trial (node/cli/tune.py): the anonymizer
(node/tuning/anonymize.py) makes the public record under the home's [anonymizer] policy,
`catalog.publish` signs and stores it, and the full private record goes to the store's private
runs. Each run carries a stable source identity (`ForeignRun.source_key`), kept only in the
private record, so the same run is never published twice and re-importing adds only new runs.

Must never: publish a record the anonymizer did not make, put the source identity, the study
name or anything of the private detail into a record, or publish a failed run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import (
    ForeignRun,
    ModelRef,
    NotPublished,
    as_trial,
    screen,
)
from gridpoint.node.catalog import publish
from gridpoint.node.home import NodeHome, resolve_home
from gridpoint.node.store.base import PrivateRun
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.node.tuning.anonymize import anonymize_trial
from gridpoint.schema import RunRecord, TaskDescriptor

__all__ = ["HomeSink", "Outcome", "open_home"]

#: What happened to one run: published now, already in this home, or left out (see reason).
IMPORTED, PRESENT, SKIPPED = "imported", "present", "skipped"


@dataclass(frozen=True)
class Outcome:
    """The fate of one run, and for a dry run the record that would be published."""

    status: str
    number: int | None = None
    record_id: str | None = None
    reason: str = ""
    left_out: tuple[NotPublished, ...] = ()
    record: RunRecord | None = None


@dataclass
class _StudyRuns:
    """The private runs already in this home for one study, by source identity and number."""

    by_key: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    by_number: dict[int, str] = field(default_factory=dict)

    def next_number(self) -> int:
        return max(self.by_number, default=-1) + 1

    def add(self, key: str, number: int, record_id: str | None) -> None:
        self.by_key[key] = (number, record_id)
        self.by_number[number] = key


def open_home(home: str | Path | NodeHome | None) -> NodeHome:
    """The node home named (or $GRIDPOINT_HOME), checked to be initialized."""
    node_home = home if isinstance(home, NodeHome) else resolve_home(str(home) if home else None)
    node_home.check()
    return node_home


class HomeSink:
    """Publishes finished runs from elsewhere into one node home (thread-safe through the store)."""

    def __init__(self, home: NodeHome, *, db: str | None = None, dry_run: bool = False) -> None:
        self.home = home
        self.dry_run = dry_run
        self._secret = home.secret
        self._policy = home.config.anonymizer
        self._identity = home.identity
        self._store: SqlStore = open_store(home.db_url(db))
        self._studies: dict[str, _StudyRuns] = {}

    def __enter__(self) -> HomeSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    def _runs(self, study: str) -> _StudyRuns:
        known = self._studies.get(study)
        if known is None:
            known = _StudyRuns()
            for private in self._store.list_private_runs(study):
                try:
                    key = str(json.loads(private.detail).get("source", ""))
                except (ValueError, AttributeError):
                    key = ""
                # A run of `tune` has no source: its identity is its Optuna trial number.
                known.by_number[private.trial_number] = key
                if key:
                    known.by_key[key] = (private.trial_number, private.record_id)
            self._studies[study] = known
        return known

    def knows(self, study: str, source_key: str) -> bool:
        """Whether this home already holds the run of that source identity."""
        return source_key in self._runs(study).by_key

    def add(self, run: ForeignRun, task: TaskDescriptor, model: ModelRef) -> Outcome:
        """Publishes one run unless this home has it already; returns what happened."""
        if run.state not in ("complete", "pruned"):
            return Outcome(SKIPPED, reason=f"{run.state}: only finished runs are published")
        if not run.study or len(run.study) > 255:
            raise ConfigError("a study name must have 1 to 255 characters")
        known = self._runs(run.study)
        if run.source_key in known.by_key:
            present, record_id = known.by_key[run.source_key]
            return Outcome(PRESENT, present, record_id)
        own = run.number
        # Taken by a `tune` trial of this study (no source): that trial is this one.
        if own is not None and known.by_number.get(own) == "":
            return Outcome(PRESENT, own)
        # Taken by another run (an in-memory study run again under one name): the next free one.
        number = own if own is not None and own not in known.by_number else known.next_number()
        screened = screen(run)
        trial, study = as_trial(run, screened, number, task, model)
        record = anonymize_trial(
            trial,
            study,
            model_family=model.family,
            public_model_id=model.public_id,
            secret=self._secret,
            policy=self._policy,
            now=run.finished_at,
        )
        if self.dry_run:
            known.add(run.source_key, number, None)
            return Outcome(IMPORTED, number, None, left_out=screened.left_out, record=record)
        record_id = publish(self._store, self._identity, record).id
        detail = {
            "source": run.source_key,
            "study": run.study,
            "trial": number,
            "state": run.state,
            "params": {k: str(v) for k, v in run.params.items()},
            "search_space": [asdict(d) for d in run.search_space],
            "curve": [[p.step, p.metric, p.value] for p in run.curve],
            "metrics": run.metrics,
            "objective": [run.objective_metric, run.objective_direction],
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "task": asdict(task),
            "not_published": [asdict(n) for n in screened.left_out],
            **run.private,
        }
        self._store.add_private_run(
            PrivateRun(
                study_name=run.study,
                trial_number=number,
                detail=json.dumps(detail, default=str),
                record_id=record_id,
                created_at=datetime.now(UTC),
            )
        )
        known.add(run.source_key, number, record_id)
        return Outcome(IMPORTED, number, record_id, left_out=screened.left_out, record=record)
