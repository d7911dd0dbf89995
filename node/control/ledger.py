"""The outbound ledger: everything that leaves this node, to which peer, when, by which rule.

Served sync pages, live query answers, statements and model downloads are noted here before
they are sent (a failed send may be noted, nothing sent goes unnoted). Notes made at once by
several serving threads are written together (group commit): one thread writes every note
waiting in one multi-row insert and transaction while the others wait for that commit, so
each page or answer still returns only once its entries are stored, and a node answering many
calls pays one write (and one pass over the ledger's indexes) for many. The same item sent
again to the same peer, as the same kind and by the same rule, within FOLD_S of the entry
written for it is counted on that entry (its count grows; its time stays the first send's),
for the kinds a peer asks for again and again (FOLDED_KINDS): a peer repeating a live query
costs one row per record a minute, not one per answer. Such a repeat is already on record
(its entry names the peer, the item, the rule and the first send), so only its count waits:
repeats are counted in memory and added to their entries with the next write, at most
REPEATS_EVERY_S later (a timer writes them when no other write comes), and when the ledger
closes. A process killed in between loses those counts, never an entry; a node answering
the same query again and again pays a write a second, not one per answer, which is most of
what a repeated live answer cost it (bench/RESULTS.md). Entries older than [ledger]
detail_days are folded into per peer, day, kind and rule counts at most once an hour, so the
ledger stays bounded. An entry is ids, kinds, a peer and a rule name: never a payload, a
study name or a path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from gridpoint.node.artifacts.manifest import artifact_id
from gridpoint.node.artifacts.service import ArtifactService, Download
from gridpoint.node.artifacts.store import ArtifactStore
from gridpoint.node.logs import log_limited
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.control_base import LedgerEntry, LedgerRepeat
from gridpoint.v1 import artifacts_pb2

__all__ = [
    "FOLDED_KINDS",
    "FOLD_S",
    "REPEATS_EVERY_S",
    "ROLL_UP_EVERY_S",
    "Copy",
    "Ledger",
    "LedgeredArtifacts",
    "copies_of",
]

#: Seconds between two roll-ups of aged entries.
ROLL_UP_EVERY_S = 3600.0
#: A repeat within this many seconds of its entry is counted on it rather than written anew.
FOLD_S = 60.0
#: The kinds folded: what a peer asks for again and again (live answers, model listings). A
#: sync page's records are sent once per peer, and each model download keeps its own entry.
FOLDED_KINDS = frozenset({"answer", "manifest"})
#: Entries remembered for folding, the newest (about 8 MB at most); a repeat of one
#: forgotten is written anew, which costs a row, never correctness.
FOLD_MEMORY = 16_384
#: Seconds a repeat's count waits in memory, at most, before it is added to its entry.
REPEATS_EVERY_S = 1.0

# What makes two entries the same thing sent again: peer, kind, item, subject and rule.
_Key = tuple[str, str, str, str, str]


def _key(entry: LedgerEntry) -> _Key:
    return (entry.peer_id, entry.kind, entry.item_id, entry.subject_id, entry.rule)


@dataclass(frozen=True, slots=True)
class _Written:
    """A row this ledger wrote: its id and time (its first send's), and until when a send of
    the same thing again is counted on it."""

    row: int
    at: datetime
    until: datetime


@dataclass(slots=True)
class _Counted:
    """Repeats counted on a row and not written yet: the first repeat's entry, and how many
    sends in all (changed in place: a repeated answer's hundred records allocate nothing)."""

    first: LedgerEntry
    more: int


@dataclass(frozen=True, slots=True)
class _Note:
    """One note() call: items sent to a peer at one time, as one kind, each count times.
    Entries are made of it only for what is written as a row, not for counted repeats."""

    at: datetime
    peer_id: str
    kind: str
    items: Sequence[tuple[str, str, str]]
    count: int

    def entry(self, item: tuple[str, str, str]) -> LedgerEntry:
        item_id, subject_id, rule = item
        return LedgerEntry(self.at, self.peer_id, self.kind, item_id, subject_id, rule, self.count)


class _Batch:
    """Notes written in one transaction; done once it committed (or failed: error). With
    flush, the repeats counted so far are written with it whatever their age."""

    def __init__(self) -> None:
        self.notes: list[_Note] = []
        self.flush = False
        self.done = False
        self.error: BaseException | None = None


class Ledger:
    """Appends to and rolls up one store's ledger; thread-safe. close() writes the repeats
    still counted in memory."""

    def __init__(self, store: CatalogStore, detail_days: int) -> None:
        self._store = store
        self._detail = timedelta(days=detail_days)
        self._lock = threading.Lock()
        self._rolled_at = 0.0
        self._written = threading.Condition()
        self._open = _Batch()  # what the next write takes
        self._writing = False
        self._closed = False
        self._timer: threading.Timer | None = None  # under _written
        # Only the writing thread uses these two. Rows of FOLDED_KINDS written in the last
        # FOLD_S, oldest first; and the repeats counted on rows and not written yet (the
        # first repeat's entry, and how many sends in all), by row, since the monotonic time
        # _counted_since.
        self._recent: dict[_Key, _Written] = {}
        self._counted: dict[int, _Counted] = {}
        self._counted_since = 0.0
        # Counted repeats whose rows were rolled up before they were written, and that could
        # not be written as rows of their own then: the next write takes them (writer only).
        self._unwritten: list[LedgerEntry] = []

    def note(
        self, peer_id: str, kind: str, items: Sequence[tuple[str, str, str]], count: int = 1
    ) -> None:
        """Notes items sent to a peer now: (item id, record it stands for, rule) each.
        Returns once they are on record (raises the store's error if they could not be):
        stored, or repeats of an entry stored, counted on it within REPEATS_EVERY_S."""
        if not items:
            return
        self._commit([_Note(datetime.now(UTC), peer_id, kind, items, count)], flush=False)
        self._maybe_roll_up()

    def flush(self) -> None:
        """Adds the repeats counted so far to their entries now (raises the store's error,
        the counts kept for the next write)."""
        self._commit([], flush=True)

    def close(self) -> None:
        """Writes the repeats still counted (a failure is logged: the entries are stored,
        only counts are lost); notes made after it are written at once."""
        with self._written:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._flush_logged()

    def _commit(self, notes: list[_Note], flush: bool) -> None:
        with self._written:
            batch = self._open
            batch.notes += notes
            batch.flush |= flush
            # Another thread is writing: it (or the next writer) takes this batch after.
            while self._writing and not batch.done:
                self._written.wait()
            if not batch.done:
                self._writing = True
                self._open = _Batch()
        if not batch.done:
            try:
                self._write(batch.notes, batch.flush)
            except BaseException as exc:
                batch.error = exc
                self._arm()  # what is counted is kept: tried again within REPEATS_EVERY_S
                raise
            finally:
                with self._written:
                    batch.done, self._writing = True, False
                    self._written.notify_all()
        if batch.error is not None:
            raise batch.error

    def _write(self, notes: Sequence[_Note], flush: bool = False) -> None:
        """Stores one batch's new entries at once, with the repeats counted so far when there
        are new entries, when asked to, or once the oldest waited REPEATS_EVERY_S; otherwise
        only counts its repeats (a timer writes them)."""
        if notes:
            self._forget(notes[0].at - timedelta(seconds=FOLD_S))
        carried, self._unwritten = self._unwritten, []
        fresh: list[LedgerEntry] = list(carried)
        folding: dict[_Key, int] = {}  # a folded kind's new entry in fresh, by key
        recent, counted = self._recent, self._counted
        for note in notes:
            at, peer_id, kind, count = note.at, note.peer_id, note.kind, note.count
            for item in note.items:
                key = (peer_id, kind, *item)  # _key() of its entry, without making one
                written = recent.get(key)
                # Later than the row, and not by much (a clock set back folds nothing).
                if written is not None and written.at <= at < written.until:
                    if not counted:
                        self._counted_since = time.monotonic()
                    on_row = counted.get(written.row)
                    if on_row is None:
                        counted[written.row] = _Counted(note.entry(item), count)
                    else:
                        on_row.more += count
                elif key in folding:
                    i = folding[key]
                    fresh[i] = replace(fresh[i], count=fresh[i].count + count)
                else:
                    if kind in FOLDED_KINDS:
                        folding[key] = len(fresh)
                    fresh.append(note.entry(item))
        if not fresh and not self._counted:
            return
        due = time.monotonic() - self._counted_since >= REPEATS_EVERY_S
        if not fresh and not (flush or self._closed or due):
            self._arm()
            return
        repeats = self._counted
        try:
            stored = self._store.append_ledger(
                fresh, [LedgerRepeat(row, c.first, c.more) for row, c in repeats.items()]
            )
        except BaseException:
            self._unwritten = carried  # and the counts stay counted
            raise
        self._counted = {}
        for key, i in folding.items():
            self._recent.pop(key, None)  # re-inserted: the dict stays oldest first
            at = fresh[i].at
            self._recent[key] = _Written(stored.ids[i], at, at + timedelta(seconds=FOLD_S))
        while len(self._recent) > FOLD_MEMORY:
            del self._recent[next(iter(self._recent))]
        if stored.gone:
            # Rows rolled up since they were written: their repeats become rows of their own,
            # written now (or, should that fail, with the next write).
            again = [
                replace(repeats[row].first, count=repeats[row].more) for row in sorted(stored.gone)
            ]
            for entry in again:
                self._recent.pop(_key(entry), None)
            self._unwritten = again
            self._write([], flush=True)

    def _arm(self) -> None:
        """Makes sure a timer writes the counted repeats within REPEATS_EVERY_S."""
        with self._written:
            if self._timer is not None or self._closed:
                return
            self._timer = threading.Timer(REPEATS_EVERY_S, self._on_timer)
            self._timer.daemon = True  # never holds a process open: close() writes them
            self._timer.start()

    def _on_timer(self) -> None:
        with self._written:
            self._timer = None
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # the store's: kept, and tried again (_commit armed a timer)
            log_limited(
                "ledger repeats",
                "could not add repeated sends to their ledger entries; kept to try again",
                logging.WARNING,
                error=type(exc).__name__,
            )

    def _forget(self, before: datetime) -> None:
        while self._recent:
            oldest = next(iter(self._recent))
            if self._recent[oldest].at >= before:
                return
            del self._recent[oldest]

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
