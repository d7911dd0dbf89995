"""Pulling an artifact from a peer: verified manifest, verified chunks, resumable, atomic.

The manifest must be signed by a node this one trusts (its author; relays are fine, authors
are still checked) and name the id asked for. Each chunk is checked against the manifest's
digest before it is written; files stream to HOME/models/.partial/ID, so memory stays at a
chunk whatever the size, and an interrupted pull resumes there (its kept chunks checked
again). A chunk the peer sends that does not match discards the partial download. The
artifact is placed (one rename) only when every chunk of every file matched its signed
digest, so each file is, byte for byte, the one its SHA-256 in the manifest names.

Must never write outside the partial folder before placement, keep a byte that failed its
digest, or trust a manifest because a trusted peer relayed it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gridpoint.errors import ArtifactError, ArtifactNotFound, PeerError, PeerMisbehaved
from gridpoint.node.artifacts.client import ArtifactClient
from gridpoint.node.artifacts.manifest import Manifest, artifact_id, verify_manifest
from gridpoint.node.artifacts.store import PARTIAL_DIR, Artifact, ArtifactStore
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import CatalogStore, Peer
from gridpoint.v1 import envelope_pb2

__all__ = ["pull"]

# What a peer is asked for: a prefix long enough to name one model among many.
_ASKABLE = re.compile(r"[0-9a-f]{8,64}")


def pull(
    home: NodeHome,
    store: CatalogStore,
    artifact_id: str,
    source_node_id: str | None = None,
    *,
    group: str = "",
    readers: tuple[str, ...] = (),
) -> Artifact:
    """Fetches an artifact (full id or unique prefix) over signed gRPC and keeps it.

    From source_node_id when given; else from its author when a trusted peer, else from any
    trusted peer that holds it and lets us fetch it. An artifact already held is returned
    as it is. group and readers are this node's own settings for the kept copy.
    """
    artifacts = ArtifactStore(home, store)
    held = _held(artifacts, artifact_id)
    if held is not None:
        return held
    if not _ASKABLE.fullmatch(artifact_id):
        raise ArtifactError(
            f"{artifact_id[:70]!r}: to pull a model, give its id or at least its first 8 hex digits"
        )
    peers = _sources(store, source_node_id)
    fallback: tuple[Peer, bytes] | None = None
    failures: list[PeerError | ArtifactNotFound] = []
    for peer in peers:
        try:
            with ArtifactClient(home, peer) as client:
                envelope = client.get_manifest(artifact_id)
        except (PeerError, ArtifactNotFound) as exc:
            failures.append(exc)
            continue
        if source_node_id is None and _signer(envelope) != peer.node_id:
            fallback = fallback or (peer, envelope)
            continue
        return _fetch(home, store, artifacts, peer, envelope, artifact_id, group, readers)
    if fallback is not None:
        peer, envelope = fallback
        return _fetch(home, store, artifacts, peer, envelope, artifact_id, group, readers)
    refusals = [f for f in failures if not isinstance(f, ArtifactNotFound)]
    if refusals:
        raise refusals[0]
    raise ArtifactNotFound(
        f"no trusted peer holds model {artifact_id} (asked {len(peers)}); "
        "give the node that shares it with --from NODE_ID"
    )


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
    return envelope_pb2.SignedEnvelope.FromString(envelope).signer_id


def _fetch(
    home: NodeHome,
    store: CatalogStore,
    artifacts: ArtifactStore,
    peer: Peer,
    envelope: bytes,
    asked: str,
    group: str,
    readers: tuple[str, ...],
) -> Artifact:
    def is_trusted(signer: str) -> bool:
        return signer == home.identity.node_id or store.get_peer(signer) is not None

    verified, manifest = verify_manifest(envelope, is_trusted, peer.address)
    full_id = artifact_id(verified.payload)
    if not full_id.startswith(asked):
        raise PeerMisbehaved(f"peer {peer.address} answered with another model than {asked}")
    partial = artifacts.root / PARTIAL_DIR / full_id
    partial.mkdir(parents=True, exist_ok=True)
    with ArtifactClient(home, peer) as client:
        _download(client, full_id, manifest, partial)
    return artifacts.place(partial, envelope, group=group, readers=readers)


@dataclass
class _Progress:
    """Where a download stands: the file being written (open) and the position in it."""

    index: int
    position: int
    out: BinaryIO | None = None


def _download(client: ArtifactClient, full_id: str, manifest: Manifest, partial: Path) -> None:
    files = manifest.files
    needed = manifest.size - sum(_kept_size(partial, f.path, f.size) for f in files)
    free = shutil.disk_usage(partial).free
    if needed > free:
        raise ArtifactError(
            f"model {full_id[:12]} needs {needed} more bytes; the node home has {free} free"
        )
    progress = _Progress(0, 0)
    try:
        progress = _resume(partial, manifest, 0)
        while progress.index < len(files):
            moved = False
            for chunk in client.download(full_id, progress.index, progress.position):
                f = files[progress.index]
                expected = min(manifest.chunk_size, f.size - progress.position)
                digest = f.chunks[progress.position // manifest.chunk_size]
                if (
                    chunk.file_index != progress.index
                    or chunk.offset != progress.position
                    or len(chunk.data) != expected
                    or hashlib.sha256(chunk.data).digest() != digest
                ):
                    raise _Tampered(
                        f"peer {client.peer.address} sent a chunk of {f.path} at offset "
                        f"{chunk.offset} that does not match the signed manifest; "
                        "the partial download was discarded"
                    )
                assert progress.out is not None
                progress.out.write(chunk.data)
                progress.position += len(chunk.data)
                moved = True
                if progress.position == f.size:
                    _close(progress)
                    progress = _resume(partial, manifest, progress.index + 1)
                    if progress.index == len(files):
                        break
            if not moved and progress.index < len(files):
                raise PeerMisbehaved(
                    f"peer {client.peer.address} ended the download without sending anything"
                )
    except _Tampered:
        _close(progress)
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        _close(progress)


class _Tampered(PeerMisbehaved):
    pass


def _kept_size(partial: Path, path: str, size: int) -> int:
    target = partial / PurePosixPath(path)
    return min(target.stat().st_size, size) if target.exists() else 0


def _resume(partial: Path, manifest: Manifest, start: int) -> _Progress:
    """The first file from start that is not complete, opened after its last kept chunk
    that still matches its signed digest (a kept chunk that does not, from a crash or a
    damaged disk, is fetched again)."""
    for index in range(start, len(manifest.files)):
        f = manifest.files[index]
        target = partial / PurePosixPath(f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("r+b" if target.exists() else "w+b")
        kept = 0
        for digest in f.chunks:
            block = out.read(manifest.chunk_size)
            if hashlib.sha256(block).digest() != digest:
                break
            kept += len(block)
        out.seek(kept)
        out.truncate(kept)
        progress = _Progress(index, kept, out)
        if kept < f.size:
            return progress
        _close(progress)
    return _Progress(len(manifest.files), 0)


def _close(progress: _Progress) -> None:
    if progress.out is not None and not progress.out.closed:
        progress.out.flush()
        os.fsync(progress.out.fileno())
        progress.out.close()
