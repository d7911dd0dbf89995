"""The outbound ledger: everything that leaves this node, to which peer, when, by which rule.

Served sync pages, live query answers, statements and model downloads are noted here before
they are sent (a failed send may be noted, nothing sent goes unnoted). Notes made at once by
several serving threads are written together (group commit): one thread writes every note
waiting in one multi-row insert and transaction while the others wait for that commit, so
each page or answer still returns only once its entries are stored, and a node answering many
calls pays one write (and one pass over the ledger's indexes) for many. Entries older than [ledger] detail_days are folded into per peer, day,
kind and rule counts at most once an hour, so the ledger stays bounded. An entry is ids,
kinds, a peer and a rule name: never a payload, a study name or a path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gridpoint.node.artifacts.manifest import artifact_id
from gridpoint.node.artifacts.service import ArtifactService, Download
from gridpoint.node.artifacts.store import ArtifactStore
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.control_base import LedgerEntry
from gridpoint.v1 import artifacts_pb2

__all__ = ["ROLL_UP_EVERY_S", "Copy", "Ledger", "LedgeredArtifacts", "copies_of"]

#: Seconds between two roll-ups of aged entries.
ROLL_UP_EVERY_S = 3600.0


class _Batch:
    """Notes written in one transaction; done once it committed (or failed: error)."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self.done = False
        self.error: BaseException | None = None


class Ledger:
    """Appends to and rolls up one store's ledger; thread-safe."""

    def __init__(self, store: CatalogStore, detail_days: int) -> None:
        self._store = store
        self._detail = timedelta(days=detail_days)
        self._lock = threading.Lock()
        self._rolled_at = 0.0
        self._written = threading.Condition()
        self._open = _Batch()  # what the next write takes
        self._writing = False

    def note(
        self, peer_id: str, kind: str, items: Sequence[tuple[str, str, str]], count: int = 1
    ) -> None:
        """Notes items sent to a peer now: (item id, record it stands for, rule) each.
        Returns once they are stored (raises the store's error if they could not be)."""
        if not items:
            return
        at = datetime.now(UTC)
        entries = [
            LedgerEntry(at, peer_id, kind, item, subject, rule, count)
            for item, subject, rule in items
        ]
        with self._written:
            batch = self._open
            batch.entries += entries
            # Another thread is writing: it (or the next writer) takes this batch after.
            while self._writing and not batch.done:
                self._written.wait()
            if not batch.done:
                self._writing = True
                self._open = _Batch()
        if not batch.done:
            try:
                self._store.append_ledger(batch.entries)
            except BaseException as exc:
                batch.error = exc
                raise
            finally:
                with self._written:
                    batch.done, self._writing = True, False
                    self._written.notify_all()
        if batch.error is not None:
            raise batch.error
        self._maybe_roll_up()

    def _maybe_roll_up(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._rolled_at < ROLL_UP_EVERY_S and self._rolled_at:
                return
            self._rolled_at = now
        self._store.roll_up_ledger(datetime.now(UTC) - self._detail)


@dataclass(frozen=True)
class Copy:
    """A peer this node sent a record to (or a variant of it): first and last time, how."""

    peer_id: str
    first_at: datetime
    last_at: datetime
    rules: tuple[str, ...]
    variant: bool


def copies_of(store: CatalogStore, record_id: str) -> list[Copy]:
    """Who holds a copy of a record because this node sent it (the ledger's detailed days)."""
    by_peer: dict[str, list[LedgerEntry]] = {}
    for entry in store.ledger(subject_id=record_id):
        by_peer.setdefault(entry.peer_id, []).append(entry)
    return [
        Copy(
            peer,
            min(e.at for e in entries),
            max(e.at for e in entries),
            tuple(sorted({e.rule for e in entries})),
            any(e.item_id != record_id for e in entries),
        )
        for peer, entries in sorted(by_peer.items(), key=lambda kv: kv[1][0].at)
    ]


class LedgeredArtifacts(ArtifactService):
    """The Artifacts answers, each manifest and model download noted in the ledger."""

    def __init__(self, artifacts: ArtifactStore, max_message_bytes: int, ledger: Ledger) -> None:
        super().__init__(artifacts, max_message_bytes)
        self._ledger = ledger

    def list(
        self, caller: str, request: artifacts_pb2.ListArtifactsRequest
    ) -> artifacts_pb2.ListArtifactsResponse:
        out = super().list(caller, request)
        listed = [artifact_id(m.payload) for m in out.manifests]
        self._ledger.note(caller, "manifest", [(a, a, "models") for a in listed])
        return out

    def get_manifest(
        self, caller: str, request: artifacts_pb2.GetManifestRequest
    ) -> artifacts_pb2.GetManifestResponse:
        out = super().get_manifest(caller, request)
        artifact = artifact_id(out.manifest.payload)
        self._ledger.note(caller, "manifest", [(artifact, artifact, "models")])
        return out

    def download(
        self,
        caller: str,
        request: artifacts_pb2.DownloadRequest,
        cancel: Callable[[], object] = lambda: None,
    ) -> Download:
        started = super().download(caller, request, cancel)
        return Download(self._counted(caller, request.artifact_id, started.chunks), started.release)

    def _counted(
        self, caller: str, artifact_id: str, chunks: Iterator[artifacts_pb2.ArtifactChunk]
    ) -> Iterator[artifacts_pb2.ArtifactChunk]:
        sent = 0
        try:
            for chunk in chunks:
                sent += 1
                yield chunk
        finally:
            # One entry per stream: how many chunks of the model left.
            if sent:
                self._ledger.note(caller, "model", [(artifact_id, artifact_id, "models")], sent)
