"""The artifact store: models this node holds, as folders under HOME/models/ID plus rows in
the node's store (through the CatalogStore contract, on any backend).

add() copies a producer's folder into the home and signs its manifest; place() is how a
verified download lands; list/get/remove/share/export work on what is held. A folder appears
under its final name only by a rename of a complete, fsynced temporary folder, and its row is
written after it: a crash leaves either nothing or an unlisted folder that the next add of
the same content replaces, never half a model.

Must never import torch or transformers (the daemon serves from this store), never put a
group name (study or federation) in an error or log line, and never read or write outside
HOME/models.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from gridpoint.errors import ArtifactError, ArtifactNotFound
from gridpoint.node.artifacts.manifest import (
    MANIFEST_TYPE,
    MAX_FILES,
    ArtifactFile,
    Manifest,
    artifact_id,
    build_files,
    check_metadata,
    check_path,
    decode_manifest,
    encode_manifest,
)
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.store.base import CatalogStore, StoredArtifact
from gridpoint.v1 import envelope_pb2

__all__ = ["Artifact", "ArtifactStore", "NewArtifact"]

_NODE_ID = re.compile(r"[0-9a-f]{40}")
_PREFIX = re.compile(r"[0-9a-f]{1,64}")
_MAX_GROUP_CHARS = 255
_TMP = ".tmp-"
PARTIAL_DIR = ".partial"
#: Days a partial download is kept for a later pull to resume.
PARTIAL_DAYS = 7


@dataclass(frozen=True)
class NewArtifact:
    """What a producer says about a folder it hands over."""

    kind: str  # "trial" | "federated"
    record_id: str | None  # the run record it belongs to (lineage)
    base_model: str  # public base model id ("" if private/config-built)
    method: str  # "full" | "lora"
    group: str  # PRIVATE: study name or federation name; never leaves the node
    score: float | None = None  # objective value, for retention ranking
    metric: str = ""  # what score measures ("accuracy", "eval_loss", ...)
    readers: tuple[str, ...] = ()  # node ids allowed to fetch (default: private)


@dataclass(frozen=True)
class Artifact(StoredArtifact):
    """A model held by this node: its stored row (the signed manifest verbatim, and what the
    node knows besides) and the files that manifest lists."""

    files: tuple[ArtifactFile, ...] = ()

    @property
    def bytes(self) -> int:
        """Size of all its files."""
        return self.size

    @property
    def chunk_size(self) -> int:
        return decode_manifest(self.envelope().payload).chunk_size

    def envelope(self) -> envelope_pb2.SignedEnvelope:
        return envelope_pb2.SignedEnvelope.FromString(self.manifest)


class ArtifactStore:
    """The models held in one node home; thread-safe (every call is its own transaction)."""

    def __init__(self, home: NodeHome, store: CatalogStore, *, read_only: bool = False) -> None:
        """read_only: a reader (the web UI) that neither creates nor sweeps the folder."""
        self._home = home
        self._store = store
        self.root = home.path / "models"
        if not read_only:
            self.root.mkdir(mode=0o700, exist_ok=True)
            self._sweep()

    # --- adding ---------------------------------------------------------------------------

    def add(self, folder: Path, info: NewArtifact) -> Artifact:
        """Copies folder into the home, signs its manifest, and stores it (atomically)."""
        _check_info(info)
        sources = _sources(folder)
        tmp = self.new_temp()
        try:
            files = build_files(sources, tmp)
            manifest = Manifest(
                kind=info.kind,
                record_id=info.record_id or "",
                base_model=info.base_model,
                method=info.method,
                files=files,
            )
            payload = encode_manifest(manifest)
            envelope = sign_envelope(self._home.identity, payload, MANIFEST_TYPE)
            return self.place(
                tmp,
                envelope.SerializeToString(deterministic=True),
                group=info.group,
                score=info.score,
                metric=info.metric,
                readers=info.readers,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def new_temp(self) -> Path:
        """A fresh temporary folder inside the models folder (same file system: renames)."""
        tmp = self.root / f"{_TMP}{os.getpid()}-{secrets.token_hex(6)}"
        tmp.mkdir(mode=0o700)
        return tmp

    def place(
        self,
        folder: Path,
        manifest_envelope: bytes,
        *,
        group: str = "",
        score: float | None = None,
        metric: str = "",
        readers: Sequence[str] = (),
    ) -> Artifact:
        """Moves a complete folder (inside self.root, its files matching the manifest) to
        its final place and stores its row; an artifact already held gains the readers."""
        envelope = envelope_pb2.SignedEnvelope.FromString(manifest_envelope)
        manifest = decode_manifest(envelope.payload)
        new_id = artifact_id(envelope.payload)
        for reader in readers:
            _check_node_id(reader)
        if self.find(new_id) is not None:
            self._store.add_artifact_readers(new_id, readers)
            return self.get(new_id)
        final = self.root / new_id
        if final.exists():  # unlisted: left by a crash between rename and row
            shutil.rmtree(final)
        os.replace(folder, final)
        try:
            self._store.add_artifact(
                StoredArtifact(
                    id=new_id,
                    kind=manifest.kind,
                    record_id=manifest.record_id or None,
                    base_model=manifest.base_model,
                    method=manifest.method,
                    group=group,
                    score=score,
                    author=envelope.signer_id,
                    manifest=manifest_envelope,
                    size=manifest.size,
                    created_at=datetime.now(UTC),
                    readers=tuple(sorted(set(readers))),
                    metric=metric,
                )
            )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        return self.get(new_id)

    # --- reading --------------------------------------------------------------------------

    def list(self, group: str | None = None) -> list[Artifact]:
        """Every artifact held (or those of one group), newest first."""
        return [_artifact(row) for row in self._store.list_artifacts(group)]

    def get(self, id_or_prefix: str) -> Artifact:
        """The artifact with this id or unique prefix; ArtifactNotFound / ArtifactError."""
        if not _PREFIX.fullmatch(id_or_prefix):
            raise ArtifactNotFound(
                f"{id_or_prefix[:70]!r} is not an artifact id (lowercase hex digits)"
            )
        rows = self._store.find_artifacts(id_or_prefix, limit=2)
        if not rows:
            raise ArtifactNotFound(f"no model {id_or_prefix} on this node (see `model list`)")
        if len(rows) > 1:
            raise ArtifactError(f"model id prefix {id_or_prefix} is ambiguous: give more of the id")
        return _artifact(rows[0])

    def find(self, artifact_id_: str) -> Artifact | None:
        """The artifact with exactly this id, or None."""
        rows = self._store.find_artifacts(artifact_id_, limit=1)
        return _artifact(rows[0]) if rows and rows[0].id == artifact_id_ else None

    def registered(self) -> set[str]:
        """Ids of the artifacts registered as a model version (registry.py): not removable."""
        return self._store.registered_artifacts()

    def folder(self, artifact: Artifact) -> Path:
        """The folder holding the artifact's files (read it; never write into it)."""
        return self.root / artifact.id

    # --- changing -------------------------------------------------------------------------

    def remove(self, id_or_prefix: str) -> None:
        """Forgets the artifact and deletes its files."""
        artifact = self.get(id_or_prefix)
        version = self._store.artifact_version(artifact.id)
        if version is not None:
            name, number = version
            raise ArtifactError(
                f"model {artifact.id[:12]} is {name} version {number}: "
                f"`gridpoint model deregister {name} {number}` first"
            )
        self._store.remove_artifact(artifact.id)
        shutil.rmtree(self.folder(artifact), ignore_errors=True)

    def share(self, id_or_prefix: str, node_id: str) -> Artifact:
        """Lets node_id fetch the artifact from this node."""
        _check_node_id(node_id)
        artifact = self.get(id_or_prefix)
        self._store.add_artifact_readers(artifact.id, [node_id])
        return self.get(artifact.id)

    def export(self, id_or_prefix: str, dest: Path) -> Path:
        """Copies the artifact's files into dest (new or empty), checking every digest: a
        folder that plain transformers / peft load with from_pretrained."""
        artifact = self.get(id_or_prefix)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ArtifactError(f"{dest} already exists and is not an empty folder")
        dest.mkdir(parents=True, exist_ok=True)
        source = self.folder(artifact)
        for f in artifact.files:
            target = dest / PurePosixPath(f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with (source / PurePosixPath(f.path)).open("rb") as src, target.open("wb") as out:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            if digest.hexdigest() != f.sha256:
                raise ArtifactError(
                    f"the stored copy of model {artifact.id[:12]} is damaged ({f.path} does not "
                    "match its manifest): remove it and pull it again"
                )
        return dest

    # --- internals ------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Deletes temporary folders whose process is gone (a crash mid-add), and partial
        downloads nobody resumed for PARTIAL_DAYS (disk use stays bounded)."""
        for tmp in self.root.glob(f"{_TMP}*"):
            pid = tmp.name.removeprefix(_TMP).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(tmp, ignore_errors=True)
        horizon = time.time() - PARTIAL_DAYS * 86400
        for partial in (self.root / PARTIAL_DIR).glob("*"):
            touched = [p.stat().st_mtime for p in partial.rglob("*")] + [partial.stat().st_mtime]
            if max(touched) < horizon:
                shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _artifact(row: StoredArtifact) -> Artifact:
    manifest = decode_manifest(envelope_pb2.SignedEnvelope.FromString(row.manifest).payload)
    return Artifact(**vars(row), files=manifest.files)


def _check_node_id(node_id: str) -> None:
    if not _NODE_ID.fullmatch(node_id):
        raise ArtifactError(f"{node_id[:50]!r} is not a node id (40 hex digits)")


def _check_info(info: NewArtifact) -> None:
    check_metadata(info.kind, info.record_id or "", info.base_model, info.method)
    if len(info.group) > _MAX_GROUP_CHARS or "\x00" in info.group:
        raise ArtifactError(f"an artifact's group name is at most {_MAX_GROUP_CHARS} characters")
    if len(info.metric) > 64:
        raise ArtifactError("an artifact's score metric name is at most 64 characters")
    for reader in info.readers:
        _check_node_id(reader)


def _sources(folder: Path) -> list[tuple[str, Path]]:
    """The files of a producer's folder as (relative posix path, path), sorted; symlinks are
    followed (a hub cache links its blobs), folders walked."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder holding a model")
    out = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(folder).as_posix()
        check_path(rel)
        out.append((rel, path))
        if len(out) > MAX_FILES:
            raise ArtifactError(f"a model folder holds at most {MAX_FILES} files")
    if not out:
        raise ArtifactError(f"{folder} holds no files")
    return out
