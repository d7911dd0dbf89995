"""Where runs from elsewhere enter a node home: anonymized, signed, published; kept in full privately.

Each run goes through the publishing service (node/publishing/service.py), as each of `tune`'s trials
does: the one anonymizer makes the public record under the home's [anonymizer] policy, it is
signed, and record and full private run are stored in one transaction. Each run carries a
stable source identity (`ForeignRun.source_key`), kept only in the private run, so the same
run is never published twice and re-importing adds only new runs.

Must never: publish a record the anonymizer did not make, put the source identity, the study
name or anything of the private detail into a record, or publish a failed run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import (
    ForeignRun,
    ModelRef,
    NotPublished,
    as_private_run,
    screen,
)
from gridpoint.node.home import NodeHome, resolve_home
from gridpoint.node.publishing.service import PublishingService
from gridpoint.node.store.sql_store import SqlStore, open_store
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
        self._store: SqlStore = open_store(home.db_url(db))
        self._publishing = PublishingService(home, self._store)
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
                key = private.detail.source
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
        private = as_private_run(run, screened, number, task, model)
        if self.dry_run:
            record = self._publishing.record_of(private)
            known.add(run.source_key, number, None)
            return Outcome(IMPORTED, number, None, left_out=screened.left_out, record=record)
        published = self._publishing.publish(private)
        known.add(run.source_key, number, published.record_id)
        return Outcome(
            IMPORTED,
            number,
            published.record_id,
            left_out=screened.left_out,
            record=published.record,
        )
