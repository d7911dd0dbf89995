"""The store interface: what the node keeps, independent of the database behind it.

Contract for every implementation (see node/store/sql_store.py):
- Thread-safe: one instance serves the daemon's gRPC threads and its sync loop.
- Storing is idempotent by record id; a record already present is counted as a duplicate
  and left untouched, so nothing stored is ever changed by a later write.
- A sync page and the peer's new cursor are stored in one transaction: a node killed
  mid-sync resumes from the last fully stored page, never twice and never skipping.
- Cursors returned by records_after() only move forward in storage order.
- The store verifies nothing: callers hand it envelopes they already verified.
- A run's private part and the record published for it are stored together or not at all
  (add_run).
- A record the database cannot hold is refused on its own (AddResult.unstorable); the rest
  of its page and the cursor are still stored.
- Everything a call reads is bounded: queries take a limit (1..MAX_QUERY_LIMIT), and
  query_envelopes() stops reading rows once its byte budget is spent.
- Artifacts (kept models) are rows only: their files live in the node home, and their
  manifests were verified by the caller. Adding is idempotent by id (a row already present
  gains the new readers and is otherwise left as it is); removing an artifact removes its
  readers with it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from gridpoint.node.store.control_base import ControlStore, StoredStatement
from gridpoint.node.store.query_filter import FilterNode, OrderBy
from gridpoint.schema import (
    CurvePoint,
    ParamValue,
    PrivacyGuarantee,
    RunRecord,
    SearchDimension,
    TaskDescriptor,
)

__all__ = [
    "MAX_QUERY_LIMIT",
    "AddResult",
    "CatalogStore",
    "ModelRef",
    "NotPublished",
    "Page",
    "Peer",
    "PendingEnvelope",
    "PrivateRun",
    "RunDetail",
    "StoredArtifact",
    "StoredRecord",
]

#: Most records one store query returns (peers are capped far lower by the service).
MAX_QUERY_LIMIT = 100_000


@dataclass(frozen=True)
class StoredRecord:
    """A verified record: its id, signer, envelope bytes as received, and decoded content."""

    id: str
    signer_id: str
    envelope: bytes
    signed_at_ms: int
    record: RunRecord


@dataclass(frozen=True)
class AddResult:
    """What a write did: records new and already present, the ids the database refused, and
    how many pending envelopes were kept (and dropped for want of room); the ids refused as
    withdrawn by their author, and the statements new to the store."""

    new: int
    duplicates: int
    unstorable: tuple[str, ...] = ()
    kept: int = 0
    dropped: int = 0
    withdrawn: tuple[str, ...] = ()
    statements: int = 0


@dataclass(frozen=True)
class PendingEnvelope:
    """A verified envelope refused for a reason that can pass (reason: the error's slug)."""

    record_id: str
    envelope: bytes
    reason: str


@dataclass(frozen=True)
class Page:
    """Envelopes (bytes as stored) after a cursor, and where to resume.

    cursors[i] is the cursor just after envelopes[i], so a reader that can take only part
    of the page (a message size limit) resumes exactly there. Records are not decoded:
    serving a page is a copy, not a parse.
    """

    envelopes: list[bytes]
    cursors: list[str]
    next_cursor: str
    has_more: bool


@dataclass(frozen=True)
class Peer:
    """A trusted peer."""

    node_id: str
    address: str
    name: str
    fingerprint: str
    cert_pem: bytes
    added_at: datetime
    sync_cursor: str = ""
    last_sync_at: datetime | None = None


@dataclass(frozen=True)
class RecordSource:
    """A trusted peer that served a record by sync (provenance), and when it first did."""

    peer_id: str
    first_seen_at: datetime


@dataclass(frozen=True)
class ModelRef:
    """What may be said of the model a run trained: a public hub id, its family, its size,
    and which of its weights trained (LoRA adapters, or the task's head alone)."""

    public_id: str = ""
    family: str = ""
    num_parameters: int = 0
    lora: bool = False
    #: Only the task's head trained, on the frozen base model (`[training] trainable = "head"`).
    head_only: bool = False

    @property
    def method(self) -> str:
        """The record's fine-tuning method (gridpoint.schema.vocabulary.METHODS)."""
        return "lora" if self.lora else "head" if self.head_only else "full"


@dataclass(frozen=True)
class NotPublished:
    """A parameter, metric or dimension left out of the record, and why."""

    kind: str  # "param" | "metric" | "search_space" | "objective"
    name: str
    reason: str


@dataclass(frozen=True)
class RunDetail:
    """Everything the organization keeps of one run, in one shape whatever produced it.

    kind is "trial" (a trial of `tune`, or a run brought in by the integrations) or
    "federated" (a run of `fed host`: its curve is per round). source is the stable identity
    of a run brought in from elsewhere ("mlflow:<run id>"), "" for the node's own runs.
    """

    state: str  # "complete" | "pruned" | "failed"
    kind: str = "trial"
    params: dict[str, ParamValue] = field(default_factory=dict)
    search_space: tuple[SearchDimension, ...] = ()
    curve: tuple[CurvePoint, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    objective_metric: str = ""
    objective_direction: str = ""
    task: TaskDescriptor = TaskDescriptor("")
    model: ModelRef = ModelRef()
    #: A failed run's error text, and its public reason (gridpoint.schema.vocabulary.FAILURES)
    #: when the failure says something about the hyperparameters.
    error: str = ""
    failure: str = ""
    source: str = ""
    study_file: str = ""
    pipeline: str = ""
    device: str = ""
    precision: str = ""
    samples_per_second: float | None = None
    trainable_parameters: int | None = None
    members: tuple[str, ...] = ()
    finished_at: datetime | None = None
    not_published: tuple[NotPublished, ...] = ()
    #: The source's own fields (an output folder, every training argument); text only.
    extra: dict[str, str] = field(default_factory=dict)
    #: The privacy mode's guarantee (None: exact values): a private study's curve and
    #: metrics above are already the released values, the only ones the node ever saw.
    privacy: PrivacyGuarantee | None = None
    #: A federated run: the last round completed before the host restarted (0: no restart).
    resumed_after_round: int = 0


@dataclass(frozen=True)
class PrivateRun:
    """The organization's own full record of a run (never leaves the node).

    study_name and trial_number are the study's own name and the trial's number (for a
    federated run: the federation's name and its run number); record_id is the record
    published for it, None when it stayed private.
    """

    study_name: str
    trial_number: int
    detail: RunDetail
    record_id: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class StoredArtifact:
    """A model the node holds, as stored: its signed manifest verbatim and what the node
    knows besides (group and score stay on this node)."""

    id: str
    kind: str
    record_id: str | None
    base_model: str
    method: str
    group: str
    score: float | None
    author: str
    manifest: bytes
    size: int
    created_at: datetime
    readers: tuple[str, ...] = ()
    #: What score measures ("accuracy", "eval_loss", ...).
    metric: str = ""


class CatalogStore(ControlStore):
    """Records, trusted peers, private runs and kept models of one node (and, from
    ControlStore, the owner's-control tables)."""

    @abstractmethod
    def add_records(self, records: Sequence[StoredRecord]) -> AddResult: ...

    @abstractmethod
    def store_sync_page(
        self,
        peer_id: str,
        records: Sequence[StoredRecord],
        next_cursor: str,
        pending: Sequence[PendingEnvelope] = (),
        statements: Sequence[StoredStatement] = (),
        offered: Sequence[str] = (),
    ) -> AddResult:
        """Stores a page (its statements first), the envelopes to retry later and the peer's
        cursor, all or nothing; the peer is noted as a source of the records and of the held
        ones it offered by id only (offered)."""

    @abstractmethod
    def pending_envelopes(self, peer_id: str) -> list[PendingEnvelope]:
        """The envelopes kept for retry from this peer, oldest first."""

    @abstractmethod
    def resolve_pending(
        self,
        peer_id: str,
        admitted: Sequence[StoredRecord],
        dropped: Sequence[str],
        statements: Sequence[StoredStatement] = (),
    ) -> AddResult:
        """Stores retried envelopes now admitted; forgets them, the dropped and the expired."""

    @abstractmethod
    def get_record(self, record_id: str) -> StoredRecord | None: ...

    @abstractmethod
    def record_sources(self, record_id: str) -> list[RecordSource]:
        """The trusted peers this node found the record at by sync, first seen first."""

    @abstractmethod
    def records_after(self, cursor: str, limit: int) -> Page: ...

    @abstractmethod
    def query(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        offset: int = 0,
        max_bytes: int | None = None,
    ) -> list[StoredRecord]:
        """Matching records in order, the first `offset` skipped (a page of a long answer),
        stopping before max_bytes of envelopes (None: no bound but limit)."""

    @abstractmethod
    def query_envelopes(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        max_bytes: int,
    ) -> list[bytes]:
        """Matching envelopes as stored, in order, stopping before max_bytes (not decoded)."""

    @abstractmethod
    def count_records(self, where: FilterNode | None = None) -> int:
        """How many records there are (that match where)."""

    @abstractmethod
    def known_names(self, family: Literal["params", "metrics"], limit: int = 10_000) -> set[str]:
        """Hyperparameter or metric names that some stored record has (at most limit)."""

    @abstractmethod
    def add_peer(self, peer: Peer) -> None: ...

    @abstractmethod
    def get_peer(self, node_id: str) -> Peer | None: ...

    @abstractmethod
    def pinned_fingerprint(self, node_id: str) -> str | None:
        """The TLS fingerprint pinned for node_id; None when node_id is not a trusted peer or
        its key was revoked (read once, on every call a peer makes: one transaction)."""

    @abstractmethod
    def list_peers(self) -> list[Peer]: ...

    @abstractmethod
    def remove_peer(self, node_id: str) -> bool: ...

    @abstractmethod
    def add_run(self, run: PrivateRun, record: StoredRecord | None = None) -> AddResult:
        """Stores a private run and the record published for it in one transaction: both
        or neither (StoreError). The record is idempotent by id as in add_records; one the
        database refuses fails the whole write."""

    @abstractmethod
    def list_private_runs(
        self, study_name: str | None = None, *, kind: str | None = "trial"
    ) -> list[PrivateRun]:
        """Private runs in the order stored: of one study (or all), of one kind (or any)."""

    @abstractmethod
    def add_artifact(self, artifact: StoredArtifact) -> bool:
        """Stores an artifact's row and readers; False (readers added) when already held."""

    @abstractmethod
    def find_artifacts(self, id_prefix: str, limit: int = 2) -> list[StoredArtifact]:
        """Artifacts whose id starts with id_prefix (at most limit), by id."""

    @abstractmethod
    def list_artifacts(self, group: str | None = None) -> list[StoredArtifact]:
        """Every artifact held (or those of one group), newest first."""

    @abstractmethod
    def add_artifact_readers(self, artifact_id: str, readers: Sequence[str]) -> None:
        """Lets more nodes fetch an artifact (readers already there are kept once)."""

    @abstractmethod
    def remove_artifact(self, artifact_id: str) -> bool:
        """Forgets an artifact and its readers; False when it was not held."""

    @abstractmethod
    def registered_artifacts(self) -> set[str]:
        """Ids of the artifacts registered as a model version (the registry's)."""

    @abstractmethod
    def artifact_version(self, artifact_id: str) -> tuple[str, int] | None:
        """The registered (name, version) an artifact is, if any (one of them)."""

    @abstractmethod
    def close(self) -> None: ...
