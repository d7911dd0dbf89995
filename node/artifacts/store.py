"""The artifact store: models this node holds, as folders under HOME/models/ID plus SQL rows.

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

import builtins
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

from sqlalchemy import Connection, delete, insert, select

from gridpoint.errors import ArtifactError, ArtifactNotFound, StoreError
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
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.models import ARTIFACT_READERS as READERS
from gridpoint.node.store.models import ARTIFACTS, MODEL_VERSIONS
from gridpoint.node.store.sql_rows import as_utc
from gridpoint.node.store.sql_store import SqlStore
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
class Artifact:
    """A model held by this node: its signed manifest and what the node knows besides."""

    id: str
    kind: str
    record_id: str | None
    base_model: str
    method: str
    group: str
    score: float | None
    metric: str
    readers: tuple[str, ...]
    author: str
    files: tuple[ArtifactFile, ...]
    bytes: int
    created_at: datetime
    #: The SignedEnvelope of the manifest, verbatim as its author signed it.
    manifest: builtins.bytes

    @property
    def chunk_size(self) -> int:
        return decode_manifest(self.envelope().payload).chunk_size

    def envelope(self) -> envelope_pb2.SignedEnvelope:
        return envelope_pb2.SignedEnvelope.FromString(self.manifest)


class ArtifactStore:
    """The models held in one node home; thread-safe (every call is its own transaction)."""

    def __init__(self, home: NodeHome, store: CatalogStore, *, read_only: bool = False) -> None:
        """read_only: a reader (the web UI) that neither creates nor sweeps the folder."""
        if not isinstance(store, SqlStore):
            raise StoreError("the artifact store needs the node's SQL store")
        self._home = home
        self._sql = store
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
        if self._row(new_id) is not None:
            self._add_readers(new_id, readers)
            return self.get(new_id)
        final = self.root / new_id
        if final.exists():  # unlisted: left by a crash between rename and row
            shutil.rmtree(final)
        os.replace(folder, final)
        try:
            with self._sql.writing() as conn:
                conn.execute(
                    insert(ARTIFACTS).values(
                        id=new_id,
                        kind=manifest.kind,
                        record_id=manifest.record_id or None,
                        base_model=manifest.base_model,
                        method=manifest.method,
                        group_name=group,
                        score=score,
                        score_metric=metric,
                        author=envelope.signer_id,
                        manifest=manifest_envelope,
                        size=manifest.size,
                        created_at=datetime.now(UTC),
                    )
                )
                if readers:
                    conn.execute(
                        insert(READERS),
                        [{"artifact_id": new_id, "node_id": r} for r in sorted(set(readers))],
                    )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        return self.get(new_id)

    # --- reading --------------------------------------------------------------------------

    def list(self, group: str | None = None) -> list[Artifact]:
        """Every artifact held (or those of one group), newest first."""
        stmt = select(ARTIFACTS).order_by(ARTIFACTS.c.created_at.desc(), ARTIFACTS.c.id)
        if group is not None:
            stmt = stmt.where(ARTIFACTS.c.group_name == group)
        with self._sql.reading() as conn:
            rows = conn.execute(stmt).all()
            readers = self._readers(conn, [r.id for r in rows])
        return [_artifact(r, readers.get(r.id, ())) for r in rows]

    def get(self, id_or_prefix: str) -> Artifact:
        """The artifact with this id or unique prefix; ArtifactNotFound / ArtifactError."""
        if not _PREFIX.fullmatch(id_or_prefix):
            raise ArtifactNotFound(
                f"{id_or_prefix[:70]!r} is not an artifact id (lowercase hex digits)"
            )
        with self._sql.reading() as conn:
            # A whole id is found through the primary key; a prefix by a scan.
            match = (
                ARTIFACTS.c.id == id_or_prefix
                if len(id_or_prefix) == 64
                else ARTIFACTS.c.id.startswith(id_or_prefix)
            )
            rows = conn.execute(select(ARTIFACTS).where(match).limit(2)).all()
            if not rows:
                raise ArtifactNotFound(f"no model {id_or_prefix} on this node (see `model list`)")
            if len(rows) > 1:
                raise ArtifactError(
                    f"model id prefix {id_or_prefix} is ambiguous: give more of the id"
                )
            readers = self._readers(conn, [rows[0].id])
        return _artifact(rows[0], readers.get(rows[0].id, ()))

    def find(self, artifact_id_: str) -> Artifact | None:
        """The artifact with exactly this id, or None."""
        row = self._row(artifact_id_)
        if row is None:
            return None
        return self.get(artifact_id_)

    def registered(self) -> set[str]:
        """Ids of the artifacts registered as a model version (registry.py): not removable."""
        with self._sql.reading() as conn:
            return set(conn.scalars(select(MODEL_VERSIONS.c.artifact_id).distinct()))

    def folder(self, artifact: Artifact) -> Path:
        """The folder holding the artifact's files (read it; never write into it)."""
        return self.root / artifact.id

    # --- changing -------------------------------------------------------------------------

    def remove(self, id_or_prefix: str) -> None:
        """Forgets the artifact and deletes its files."""
        artifact = self.get(id_or_prefix)
        with self._sql.writing() as conn:
            version = conn.execute(
                select(MODEL_VERSIONS.c.name, MODEL_VERSIONS.c.version)
                .where(MODEL_VERSIONS.c.artifact_id == artifact.id)
                .limit(1)
            ).first()
            if version is not None:
                raise ArtifactError(
                    f"model {artifact.id[:12]} is {version.name} version {version.version}: "
                    f"`gridpoint model deregister {version.name} {version.version}` first"
                )
            conn.execute(delete(ARTIFACTS).where(ARTIFACTS.c.id == artifact.id))
        shutil.rmtree(self.folder(artifact), ignore_errors=True)

    def share(self, id_or_prefix: str, node_id: str) -> Artifact:
        """Lets node_id fetch the artifact from this node."""
        _check_node_id(node_id)
        artifact = self.get(id_or_prefix)
        self._add_readers(artifact.id, [node_id])
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

    def _row(self, artifact_id_: str) -> object | None:
        with self._sql.reading() as conn:
            return conn.execute(
                select(ARTIFACTS.c.id).where(ARTIFACTS.c.id == artifact_id_)
            ).first()

    def _readers(self, conn: Connection, ids: builtins.list[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, builtins.list[str]] = {}
        for i in range(0, len(ids), 500):
            rows = conn.execute(
                select(READERS.c.artifact_id, READERS.c.node_id)
                .where(READERS.c.artifact_id.in_(ids[i : i + 500]))
                .order_by(READERS.c.node_id)
            )
            for artifact, node in rows:
                out.setdefault(artifact, []).append(node)
        return {k: tuple(v) for k, v in out.items()}

    def _add_readers(self, artifact_id_: str, readers: Sequence[str]) -> None:
        with self._sql.writing() as conn:
            present = set(
                conn.scalars(select(READERS.c.node_id).where(READERS.c.artifact_id == artifact_id_))
            )
            fresh = sorted(set(readers) - present)
            if fresh:
                conn.execute(
                    insert(READERS), [{"artifact_id": artifact_id_, "node_id": n} for n in fresh]
                )

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


def _artifact(row: object, readers: tuple[str, ...]) -> Artifact:
    r = row._mapping  # type: ignore[attr-defined]
    manifest = decode_manifest(envelope_pb2.SignedEnvelope.FromString(r["manifest"]).payload)
    created = as_utc(r["created_at"])
    return Artifact(
        id=r["id"],
        kind=r["kind"],
        record_id=r["record_id"],
        base_model=r["base_model"],
        method=r["method"],
        group=r["group_name"],
        score=r["score"],
        metric=r["score_metric"],
        readers=readers,
        author=r["author"],
        files=manifest.files,
        bytes=r["size"],
        created_at=created,
        manifest=r["manifest"],
    )


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
