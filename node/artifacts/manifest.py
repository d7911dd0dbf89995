"""An artifact's manifest: what its author signs about a model folder, and the rules it obeys.

build_files() copies a folder while hashing it chunk by chunk (one read of every byte);
encode_manifest() is the single place a manifest is serialized for signing, and
artifact_id() names it by those bytes. verify_manifest() checks a received envelope (signed
by a trusted author, the right type) and decode_manifest() every rule a manifest obeys
before anything reads its paths or sizes.

Must never accept a path that leaves the artifact folder (absolute, "..", backslashes, NUL),
a file whose path is another file's folder ("a" and "a/b"), more files or chunks than the
limits below, or a digest of the wrong length: a manifest comes from a peer, and its paths
become file names in this node's home.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from google.protobuf.message import DecodeError

from gridpoint.errors import ArtifactError, EnvelopeError, PeerMisbehaved, in_words
from gridpoint.node.protocol.envelope import VerifiedEnvelope, signing_message, verify_envelope
from gridpoint.schema.vocabulary import HUB_ID, KINDS
from gridpoint.v1 import artifacts_pb2, envelope_pb2

__all__ = [
    "CHUNK_SIZE",
    "MANIFEST_TYPE",
    "MAX_CHUNK",
    "MAX_FILES",
    "MAX_PATH_CHARS",
    "ArtifactFile",
    "Manifest",
    "artifact_id",
    "build_files",
    "chunk_count",
    "decode_manifest",
    "encode_manifest",
    "verify_manifest",
]

MANIFEST_TYPE = artifacts_pb2.ArtifactManifest.DESCRIPTOR.full_name
MANIFEST_VERSION = 1
#: Bytes per chunk: the unit of download, verification and resumption (1 MiB keeps a chunk
#: message well under the default 4 MiB gRPC limit and a 100 GB model's manifest under it too).
CHUNK_SIZE = 1024 * 1024
_MIN_CHUNK = 4096
#: The largest chunk size a manifest may name.
MAX_CHUNK = 2 * 1024 * 1024
#: Most files of one artifact, and the longest path of one.
MAX_FILES = 10_000
MAX_PATH_CHARS = 512
#: Largest file an artifact may hold (1 TiB); keeps every size far inside int64.
MAX_FILE_BYTES = 1 << 40
_ID_TAG = b"gridpoint.v1/artifact-id"
_RECORD_ID = re.compile(r"(|[0-9a-f]{64})")
_PATH_PART = re.compile(r"[A-Za-z0-9_.\-+=@ ]{1,255}")


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact: its path in the folder, size and SHA-256 (hex), and the
    SHA-256 of each chunk (raw digests, in order)."""

    path: str
    size: int
    sha256: str
    chunks: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """What an author signs about a model folder (see artifacts.proto)."""

    kind: str
    record_id: str
    base_model: str
    method: str
    files: tuple[ArtifactFile, ...]
    chunk_size: int = CHUNK_SIZE

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks a file of size bytes has (none when it is empty)."""
    return math.ceil(size / chunk_size)


def artifact_id(payload: bytes) -> str:
    """The id of an artifact: SHA-256 over a tag and its manifest's signed bytes."""
    return hashlib.sha256(signing_message(_ID_TAG, payload)).hexdigest()


def encode_manifest(manifest: Manifest) -> bytes:
    """The bytes that get signed: deterministic serialization of the manifest."""
    msg = artifacts_pb2.ArtifactManifest(
        schema_version=MANIFEST_VERSION,
        kind=manifest.kind,
        record_id=manifest.record_id,
        base_model=manifest.base_model,
        method=manifest.method,
        chunk_size=manifest.chunk_size,
        files=[
            artifacts_pb2.ArtifactFile(
                path=f.path,
                size=f.size,
                chunk_sha256=list(f.chunks),
                sha256=bytes.fromhex(f.sha256),
            )
            for f in sorted(manifest.files, key=lambda f: f.path)
        ],
    )
    return msg.SerializeToString(deterministic=True)


def decode_manifest(payload: bytes) -> Manifest:
    """Parses and checks a manifest; ArtifactError names what is wrong."""
    try:
        msg = artifacts_pb2.ArtifactManifest.FromString(payload)
    except DecodeError:
        raise ArtifactError("the manifest is not a valid gridpoint.v1.ArtifactManifest") from None
    if msg.schema_version != MANIFEST_VERSION:
        raise ArtifactError(f"manifest version {msg.schema_version} is not known here")
    check_metadata(msg.kind, msg.record_id, msg.base_model, msg.method)
    if not _MIN_CHUNK <= msg.chunk_size <= MAX_CHUNK:
        raise ArtifactError(f"manifest chunk size must be {_MIN_CHUNK}..{MAX_CHUNK} bytes")
    if not 1 <= len(msg.files) <= MAX_FILES:
        raise ArtifactError(f"a manifest lists 1 to {MAX_FILES} files")
    files = []
    last = ""
    for i, f in enumerate(msg.files):
        check_path(f.path)
        if f.path <= last:
            raise ArtifactError(f"manifest files[{i}]: paths must be sorted and unique")
        last = f.path
        if f.size > MAX_FILE_BYTES:
            raise ArtifactError(f"manifest files[{i}]: larger than {MAX_FILE_BYTES} bytes")
        if len(f.chunk_sha256) != chunk_count(f.size, msg.chunk_size):
            raise ArtifactError(f"manifest files[{i}]: chunk digests do not match its size")
        if len(f.sha256) != 32 or any(len(d) != 32 for d in f.chunk_sha256):
            raise ArtifactError(f"manifest files[{i}]: a digest is not 32 bytes")
        files.append(ArtifactFile(f.path, f.size, f.sha256.hex(), tuple(f.chunk_sha256)))
    _check_folders(files)
    return Manifest(
        kind=msg.kind,
        record_id=msg.record_id,
        base_model=msg.base_model,
        method=msg.method,
        files=tuple(files),
        chunk_size=msg.chunk_size,
    )


def check_metadata(kind: str, record_id: str, base_model: str, method: str) -> None:
    """ArtifactError unless kind, record id, base model and method are ones a manifest holds."""
    if kind not in KINDS:
        raise ArtifactError(f"artifact kind must be one of {', '.join(KINDS)}")
    if not _RECORD_ID.fullmatch(record_id):
        raise ArtifactError("artifact record id must be a record id (64 hex digits)")
    if base_model and not HUB_ID.fullmatch(base_model):
        raise ArtifactError("artifact base model must be a public hub id like 'org/model'")
    if method not in ("full", "lora"):
        raise ArtifactError("artifact method must be 'full' or 'lora'")


def _check_folders(files: list[ArtifactFile]) -> None:
    """ArtifactError when a file's path is also the folder of another file's path."""
    paths = {f.path for f in files}
    for f in files:
        parts = f.path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in paths:
                raise ArtifactError(
                    f"manifest lists {folder!r} both as a file and as the folder of {f.path!r}"
                )


def check_path(path: str) -> None:
    """ArtifactError unless path is a plain relative path inside the artifact folder."""
    parts = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH_CHARS
        or any(p in ("", ".", "..") or not _PATH_PART.fullmatch(p) for p in parts)
    ):
        shown = path if len(path) <= 60 else f"{path[:40]}..."
        raise ArtifactError(f"artifact file path {shown!r} is not a plain relative path")


def verify_manifest(
    envelope_bytes: bytes, is_trusted: Callable[[str], bool], source: str
) -> tuple[VerifiedEnvelope, Manifest]:
    """A received manifest envelope, verified (signature, trusted author, type) and decoded.

    PeerMisbehaved when it does not verify: a correct peer serves only what its author signed.
    """
    try:
        envelope = envelope_pb2.SignedEnvelope.FromString(envelope_bytes)
    except DecodeError:
        raise PeerMisbehaved(f"peer {source} sent a manifest that does not parse") from None
    try:
        verified = verify_envelope(envelope, expected_type=MANIFEST_TYPE, is_trusted=is_trusted)
        return verified, decode_manifest(verified.payload)
    except (ArtifactError, EnvelopeError) as exc:
        raise PeerMisbehaved(f"peer {source} sent a manifest that is refused: {exc}") from None


def build_files(sources: list[tuple[str, Path]], dest: Path) -> tuple[ArtifactFile, ...]:
    """Copies each (path, source) into dest/path, hashing every chunk on the way; fsyncs."""
    files = []
    for rel, source in sources:
        target = dest / PurePosixPath(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        whole = hashlib.sha256()
        chunks = []
        size = 0
        try:
            with source.open("rb") as src, target.open("wb") as out:
                while block := src.read(CHUNK_SIZE):
                    whole.update(block)
                    chunks.append(hashlib.sha256(block).digest())
                    size += len(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise ArtifactError(f"cannot copy the model file {rel}: {in_words(exc)}") from exc
        files.append(ArtifactFile(rel, size, whole.hexdigest(), tuple(chunks)))
    return tuple(files)
