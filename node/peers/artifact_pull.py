"""Pulling an artifact from a trusted peer over the transport: verified manifest, verified
chunks, resumable, atomic.

The manifest must be signed by a node this one trusts (its author; relays are fine, authors
are still checked), name the id asked for and obey every manifest rule (no path that is also
another file's folder) before anything is written. Each chunk is checked against the
manifest's digest before it is written, and each file's whole SHA-256 against the manifest
once its last chunk is in (a manifest whose digests contradict each other is refused). Files
stream to HOME/models/.partial/ID, so memory stays at a chunk whatever the size, and an
interrupted pull resumes there (its kept chunks checked again). The artifact is placed (one
rename) only when every file matched, and only if the disk keeps a margin free afterwards.

A peer that is busy (or briefly unreachable) is asked again a few times, a second apart,
resuming where the download stopped; a stream it ends after delivering chunks (it bounds
each one) is resumed at once; one that goes silent is given up after the transport's idle
timeout.
Must never write outside the partial folder before placement, keep a byte that failed its
digest, trust a manifest because a trusted peer relayed it, or put a home path in an error.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from gridpoint.errors import (
    ArtifactError,
    ArtifactNotFound,
    Busy,
    PeerError,
    PeerMisbehaved,
    in_words,
)
from gridpoint.node.artifacts.manifest import Manifest, artifact_id, verify_manifest
from gridpoint.node.artifacts.store import PARTIAL_DIR, Artifact, ArtifactStore
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.transport import Chunk, Connector, PeerTransport
from gridpoint.node.protocol.envelope import VerifiedEnvelope
from gridpoint.node.store.base import CatalogStore, Peer
from gridpoint.v1 import envelope_pb2

__all__ = ["BUSY_TRIES", "Offer", "Pulled", "disk_margin", "offered", "pull"]

#: Refusals in a row (Busy, with no chunk between) before a pull gives the peer up.
BUSY_TRIES = 10
_BUSY_WAIT_S = 1.0
# What a peer is asked for: a prefix long enough to name one model among many.
_ASKABLE = re.compile(r"[0-9a-f]{8,64}")
_MB = 1024 * 1024
# Chunks received and checked but not yet written, at most (memory: a few chunks).
_AHEAD = 4
# How often a side blocked on the hand-over looks whether the other one stopped.
_POLL_S = 0.05


@dataclass(frozen=True)
class Pulled:
    """The artifact asked for, and whether this pull fetched it (False: already held)."""

    artifact: Artifact
    fetched: bool


@dataclass(frozen=True)
class Offer:
    """An artifact a peer lets this node fetch: its id and verified manifest."""

    id: str
    manifest: Manifest


def disk_margin(total_bytes: int) -> int:
    """Bytes a pull leaves free on the disk it writes to: 1% of it, at least 64 MiB."""
    return max(64 * _MB, total_bytes // 100)


def pull(
    home: NodeHome,
    store: CatalogStore,
    artifact_id: str,
    source_node_id: str | None = None,
    *,
    group: str = "",
    readers: tuple[str, ...] = (),
    connect: Connector | None = None,
) -> Pulled:
    """Fetches an artifact (full id or unique prefix) from a trusted peer and keeps it.

    From source_node_id when given; else from its author when a trusted peer, else from any
    trusted peer that holds it and lets us fetch it. An artifact already held is returned
    as it is. group and readers are this node's own settings for the kept copy; connect
    opens transports (default: gRPC over mutual TLS).
    """
    artifacts = ArtifactStore(home, store)
    held = _held(artifacts, artifact_id)
    if held is not None:
        return Pulled(held, fetched=False)
    if not _ASKABLE.fullmatch(artifact_id):
        raise ArtifactError(
            f"{artifact_id[:70]!r}: to pull a model, give its id or at least its first 8 hex digits"
        )
    if connect is None:
        from gridpoint.node.peers.grpc_transport import grpc_connector

        connect = grpc_connector(home)
    peers = _sources(store, source_node_id)
    fallback: tuple[Peer, bytes] | None = None
    failures: list[PeerError | ArtifactNotFound] = []
    for peer in peers:
        try:
            with connect(peer) as transport:
                envelope = transport.artifact_manifest(artifact_id)
        except (PeerError, ArtifactNotFound) as exc:
            failures.append(exc)
            continue
        if source_node_id is None and _signer(envelope) != peer.node_id:
            fallback = fallback or (peer, envelope)
            continue
        partial = _fetch(home, store, artifacts, connect, peer, envelope, artifact_id)
        return Pulled(artifacts.place(partial, envelope, group=group, readers=readers), True)
    if fallback is not None:
        peer, envelope = fallback
        partial = _fetch(home, store, artifacts, connect, peer, envelope, artifact_id)
        return Pulled(artifacts.place(partial, envelope, group=group, readers=readers), True)
    refusals = [f for f in failures if not isinstance(f, ArtifactNotFound)]
    if refusals:
        raise refusals[0]
    raise ArtifactNotFound(
        f"no trusted peer holds model {artifact_id} (asked {len(peers)}); "
        "give the node that shares it with --from NODE_ID"
    )


def offered(home: NodeHome, store: CatalogStore, peer: Peer, connect: Connector) -> list[Offer]:
    """The artifacts peer lets this node fetch, each manifest verified; manifests whose
    author this node does not trust are left out (it could not pull them)."""
    with connect(peer) as transport:
        listed = transport.artifact_manifests()
    is_trusted = _trusted(home, store)
    offers = []
    for envelope in listed.envelopes:
        if not is_trusted(_signer(envelope)):
            continue
        verified, manifest = verify_manifest(envelope, is_trusted, peer.address)
        offers.append(Offer(artifact_id(verified.payload), manifest))
    return offers


def _held(artifacts: ArtifactStore, artifact_id: str) -> Artifact | None:
    try:
        return artifacts.get(artifact_id)
    except ArtifactNotFound:
        return None


def _sources(store: CatalogStore, source_node_id: str | None) -> list[Peer]:
    if source_node_id is None:
        peers = store.list_peers()
        if not peers:
            raise ArtifactError("this node trusts no peer yet: add one with `gridpoint peer add`")
        return peers
    matches = [p for p in store.list_peers() if p.node_id.startswith(source_node_id)]
    if len(matches) != 1:
        raise ArtifactError(
            f"--from {source_node_id[:40]} names "
            + ("no trusted peer" if not matches else "several trusted peers")
        )
    return matches


def _signer(envelope: bytes) -> str:
    # The transport re-serialized what it decoded: these bytes always parse.
    return envelope_pb2.SignedEnvelope.FromString(envelope).signer_id


def _trusted(home: NodeHome, store: CatalogStore) -> Callable[[str], bool]:
    def is_trusted(signer: str) -> bool:
        return signer == home.identity.node_id or store.get_peer(signer) is not None

    return is_trusted


def _fetch(
    home: NodeHome,
    store: CatalogStore,
    artifacts: ArtifactStore,
    connect: Connector,
    peer: Peer,
    envelope: bytes,
    asked: str,
) -> Path:
    """Downloads into the partial folder; returns it complete and checked, ready to place."""
    verified, manifest = verify_manifest(envelope, _trusted(home, store), peer.address)
    full_id = _checked_id(verified, asked, peer)
    partial = artifacts.root / PARTIAL_DIR / full_id
    try:
        partial.mkdir(parents=True, exist_ok=True)
        _check_room(partial, manifest, full_id)
        with connect(peer) as transport:
            _download(transport, full_id, manifest, partial)
    except _Discard:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except OSError as exc:
        raise ArtifactError(f"cannot write model {full_id[:12]}: {in_words(exc)}") from None
    return partial


def _checked_id(verified: VerifiedEnvelope, asked: str, peer: Peer) -> str:
    full_id = artifact_id(verified.payload)
    if not full_id.startswith(asked):
        raise PeerMisbehaved(f"peer {peer.address} answered with another model than {asked}")
    return full_id


def _check_room(partial: Path, manifest: Manifest, full_id: str) -> None:
    """ArtifactError, with the numbers, unless the missing bytes fit and leave the margin."""
    needed = manifest.size - sum(_kept_size(partial, f.path, f.size) for f in manifest.files)
    usage = shutil.disk_usage(partial)
    margin = disk_margin(usage.total)
    if needed + margin > usage.free:
        raise ArtifactError(
            f"model {full_id[:12]} needs {_mb(needed)} more, and the node home's disk has "
            f"{_mb(usage.free)} free of which {_mb(margin)} must stay free: make room first"
        )


def _mb(size: int) -> str:
    return f"{size / _MB:,.1f} MB"


@dataclass
class _Progress:
    """Where writing stands: the file being written (open), the position in it, and the
    SHA-256 of its bytes so far."""

    index: int
    position: int
    out: BinaryIO | None = None
    whole: hashlib._Hash = field(default_factory=hashlib.sha256)


class _Discard(PeerMisbehaved):
    """The peer sent what the signed manifest rules out: the partial download is dropped."""


def _download(transport: PeerTransport, full_id: str, manifest: Manifest, partial: Path) -> None:
    """Receives chunks here while a _Writer checks and writes them: the chunk's place and
    size on this thread, its SHA-256 on the writer's checking thread, the write and each
    file's whole SHA-256 on its writing thread (hashlib and file writes release the GIL, so
    receiving, checking and writing run side by side)."""
    writer = _Writer(partial, manifest, transport.address)
    refused = 0
    try:
        while not writer.received_all():
            before = writer.cursor
            try:
                chunks = transport.artifact_chunks(full_id, *writer.cursor)
                with closing(chunks):
                    for chunk in chunks:
                        writer.put(_placed(chunk, writer.cursor, manifest, transport.address))
                        if writer.received_all():
                            break
            except Busy as exc:
                if writer.cursor != before:
                    # The peer ended a stream that was delivering (it bounds each one):
                    # not busy, so the rest is asked for at once.
                    refused = 0
                    continue
                refused += 1
                if refused >= BUSY_TRIES:
                    raise Busy(
                        f"{exc} ({BUSY_TRIES} times in a row); try again later: the download "
                        "resumes where it stopped"
                    ) from None
                time.sleep(_BUSY_WAIT_S)
                continue
            refused = 0
            if writer.cursor == before:
                raise PeerMisbehaved(
                    f"peer {transport.address} ended the download without sending anything"
                )
        writer.finish()
    except _Discard:
        writer.abandon()
        raise
    finally:
        writer.close()


def _placed(chunk: Chunk, cursor: tuple[int, int], manifest: Manifest, source: str) -> bytes:
    """The chunk's bytes when it is where and as long as the signed manifest has at cursor
    (its digest is checked by the writer, before it is written)."""
    index, position = cursor
    f = manifest.files[index]
    if (
        chunk.file_index != index
        or chunk.offset != position
        or len(chunk.data) != min(manifest.chunk_size, f.size - position)
    ):
        raise _mismatch(source, f.path, chunk.offset)
    return chunk.data


def _mismatch(source: str, path: str, offset: int) -> _Discard:
    return _Discard(
        f"peer {source} sent a chunk of {path} at offset {offset} that does not "
        "match the signed manifest; the partial download was discarded"
    )


class _Writer:
    """Checks each chunk's SHA-256 on one thread of its own and writes the checked chunks in
    order on another, at most _AHEAD chunks behind the receiver at each step (memory stays
    at a few chunks); checks and closes each complete file. A chunk whose digest does not
    match ends both threads: neither it nor anything after it is written.

    cursor is where the next chunk to receive starts (file index, offset): the writer's
    position plus what is queued. A failure on the checking or writing side is raised by the
    next put() or by finish().
    """

    def __init__(self, partial: Path, manifest: Manifest, source: str) -> None:
        self._partial, self._manifest, self._source = partial, manifest, source
        self._progress = _resume(partial, manifest, 0, source)
        self.cursor = (self._progress.index, self._progress.position)
        self._received: queue.Queue[tuple[bytes, tuple[int, int]] | None] = queue.Queue(_AHEAD)
        self._checked: queue.Queue[bytes | None] = queue.Queue(_AHEAD)
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._checker = threading.Thread(
            target=self._check, name="gridpoint-pull-checker", daemon=True
        )
        self._thread = threading.Thread(target=self._run, name="gridpoint-pull-writer", daemon=True)
        self._checker.start()
        self._thread.start()

    def received_all(self) -> bool:
        return self.cursor[0] == len(self._manifest.files)

    def put(self, data: bytes) -> None:
        at = self.cursor
        index, position = self.cursor[0], self.cursor[1] + len(data)
        files = self._manifest.files
        while index < len(files) and position == files[index].size:
            index, position = index + 1, 0
        self.cursor = (index, position)
        _hand_over(self._received, (data, at), self._checker)
        self._raise_failure()

    def finish(self) -> None:
        """Waits until everything queued is checked, written and checked whole."""
        self.close()
        self._raise_failure()

    def close(self) -> None:
        """Checks and writes what is still queued (a later pull resumes after it), then ends
        the threads; does nothing once they ended."""
        _hand_over(self._received, None, self._checker)
        self._checker.join()
        self._thread.join()

    def abandon(self) -> None:
        """Ends the threads without writing what is queued (the download is discarded)."""
        self._stopping.set()
        self._checker.join()
        self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _check(self) -> None:
        """Passes on each received chunk whose SHA-256 is the manifest's, in order; the
        first that does not ends the download (nothing after it reaches the writer)."""
        try:
            while not self._stopping.is_set():
                try:
                    item = self._received.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is None:
                    return
                data, (index, position) = item
                f = self._manifest.files[index]
                if hashlib.sha256(data).digest() != f.chunks[position // self._manifest.chunk_size]:
                    raise _mismatch(self._source, f.path, position)
                _hand_over(self._checked, data, self._thread)
        except BaseException as exc:  # raised on the receiver's side (put, finish)
            self._error = self._error or exc
            self._stopping.set()
        finally:
            _hand_over(self._checked, None, self._thread)

    def _run(self) -> None:
        progress = self._progress
        try:
            while not self._stopping.is_set():
                try:
                    data = self._checked.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if data is None or self._stopping.is_set():
                    return
                assert progress.out is not None
                progress.out.write(data)
                progress.whole.update(data)
                progress.position += len(data)
                if progress.position == self._manifest.files[progress.index].size:
                    _finish(progress, self._manifest, self._source)
                    progress = _resume(
                        self._partial, self._manifest, progress.index + 1, self._source
                    )
        except BaseException as exc:  # raised on the receiver's side (put, finish)
            self._error = self._error or exc
            self._stopping.set()
        finally:
            _close(progress)


def _hand_over(to: queue.Queue[Any], item: Any, taker: threading.Thread) -> None:
    """Queues item, waiting for room while its taker is alive (a dead one takes none)."""
    while taker.is_alive():
        try:
            to.put(item, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def _finish(progress: _Progress, manifest: Manifest, source: str) -> None:
    """Closes a complete file after checking its whole digest against the manifest's."""
    f = manifest.files[progress.index]
    _close(progress)
    if progress.whole.hexdigest() != f.sha256:
        raise _Discard(
            f"peer {source} sent a manifest whose SHA-256 of {f.path} contradicts its chunk "
            "digests (the author signed an inconsistent manifest); nothing was kept"
        )


def _kept_size(partial: Path, path: str, size: int) -> int:
    target = partial / PurePosixPath(path)
    return min(target.stat().st_size, size) if target.is_file() else 0


def _resume(partial: Path, manifest: Manifest, start: int, source: str) -> _Progress:
    """The first file from start that is not complete, opened after its last kept chunk
    that still matches its signed digest (a kept chunk that does not, from a crash or a
    damaged disk, is fetched again); complete files on the way are checked whole."""
    for index in range(start, len(manifest.files)):
        f = manifest.files[index]
        target = partial / PurePosixPath(f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("r+b" if target.exists() else "w+b")
        progress = _Progress(index, 0, out)
        for digest in f.chunks:
            block = out.read(manifest.chunk_size)
            if hashlib.sha256(block).digest() != digest:
                break
            progress.whole.update(block)
            progress.position += len(block)
        out.seek(progress.position)
        out.truncate(progress.position)
        if progress.position < f.size:
            return progress
        _finish(progress, manifest, source)
    return _Progress(len(manifest.files), 0)


def _close(progress: _Progress) -> None:
    if progress.out is not None and not progress.out.closed:
        progress.out.flush()
        os.fsync(progress.out.fileno())
        progress.out.close()
