"""What a node answers on gridpoint.v1.Artifacts: the manifests a caller may fetch, and chunks.

Authentication happened before (the daemon's interceptor: signed request, pinned TLS
certificate of a trusted peer); here the caller's node id decides what it may fetch: an
artifact's readers, nobody else. A refusal is PERMISSION_DENIED and a rate-limited log line
naming the method and the caller, never a group name or a path.

Every cost a request can cause is bounded: manifests per answer (and the message budget),
concurrent downloads (MAX_STREAMS; more are told RESOURCE_EXHAUSTED), bytes and seconds per
download stream (the client resumes), and memory (one chunk read at a time).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import PurePosixPath

import grpc

from gridpoint.errors import (
    ArtifactError,
    ArtifactNotFound,
    GridpointError,
    NotShared,
    RequestError,
)
from gridpoint.node.artifacts.manifest import decode_manifest
from gridpoint.node.artifacts.store import Artifact, ArtifactStore
from gridpoint.node.logs import log_limited
from gridpoint.node.protocol.rpc_errors import abort_with, rpc_boundary
from gridpoint.v1 import artifacts_pb2, artifacts_pb2_grpc, envelope_pb2

__all__ = [
    "MAX_LIST",
    "MAX_STREAMS",
    "MAX_STREAM_BYTES",
    "MAX_STREAM_S",
    "ArtifactService",
    "ArtifactsServicer",
    "Busy",
]

#: Most manifests one List answers.
MAX_LIST = 1000
#: Downloads served at once; the daemon's worker threads are shared with sync and query.
MAX_STREAMS = 2
#: Most bytes, and seconds, one download stream serves before it ends (the client resumes).
MAX_STREAM_BYTES = 1 << 30
MAX_STREAM_S = 300.0
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_OVERHEAD = 16 * 1024


class ArtifactService:
    """The Artifacts answers of one node, for an authenticated caller."""

    def __init__(self, artifacts: ArtifactStore, max_message_bytes: int) -> None:
        self._artifacts = artifacts
        self._budget = max_message_bytes - _OVERHEAD
        self._streams = threading.BoundedSemaphore(MAX_STREAMS)

    def list(
        self, caller: str, request: artifacts_pb2.ListArtifactsRequest
    ) -> artifacts_pb2.ListArtifactsResponse:
        limit = min(request.limit or MAX_LIST, MAX_LIST)
        out = artifacts_pb2.ListArtifactsResponse()
        size = 0
        readable = [a for a in self._artifacts.list() if caller in a.readers]
        for artifact in readable[:limit]:
            size += len(artifact.manifest) + 8
            if size > self._budget:
                out.truncated = True
                break
            out.manifests.append(envelope_pb2.SignedEnvelope.FromString(artifact.manifest))
        out.truncated = out.truncated or len(readable) > limit
        return out

    def get_manifest(
        self, caller: str, request: artifacts_pb2.GetManifestRequest
    ) -> artifacts_pb2.GetManifestResponse:
        if not _PREFIX.fullmatch(request.artifact_id):
            raise RequestError("artifact_id must be 8 to 64 lowercase hex digits")
        artifact = self._readable(caller, request.artifact_id)
        if len(artifact.manifest) > self._budget:
            raise ArtifactError("the manifest is larger than this node's message limit")
        return artifacts_pb2.GetManifestResponse(
            manifest=envelope_pb2.SignedEnvelope.FromString(artifact.manifest)
        )

    def download(
        self, caller: str, request: artifacts_pb2.DownloadRequest
    ) -> Iterator[artifacts_pb2.ArtifactChunk]:
        """Checks the request, then streams chunks (a generator that holds a stream slot)."""
        if not _FULL_ID.fullmatch(request.artifact_id):
            raise RequestError("artifact_id must be the full id (64 lowercase hex digits)")
        artifact = self._readable(caller, request.artifact_id)
        manifest = decode_manifest(artifact.envelope().payload)
        if request.file_index >= len(manifest.files):
            raise RequestError(f"file_index must be below {len(manifest.files)}")
        start = manifest.files[request.file_index]
        if request.offset % manifest.chunk_size or request.offset > start.size:
            raise RequestError("offset must be a multiple of the chunk size inside the file")
        if not self._streams.acquire(blocking=False):
            raise Busy("this node is serving as many downloads as it allows; retry shortly")
        return self._chunks(artifact, manifest.chunk_size, request.file_index, request.offset)

    def _chunks(
        self, artifact: Artifact, chunk_size: int, first: int, offset: int
    ) -> Iterator[artifacts_pb2.ArtifactChunk]:
        sent = 0
        ends = time.monotonic() + MAX_STREAM_S
        folder = self._artifacts.folder(artifact)
        try:
            for index in range(first, len(artifact.files)):
                f = artifact.files[index]
                position = offset if index == first else 0
                with (folder / PurePosixPath(f.path)).open("rb") as src:
                    src.seek(position)
                    while position < f.size:
                        if sent >= MAX_STREAM_BYTES or time.monotonic() > ends:
                            return
                        data = src.read(min(chunk_size, f.size - position))
                        if len(data) != min(chunk_size, f.size - position):
                            raise ArtifactError("the stored copy of this model is damaged")
                        yield artifacts_pb2.ArtifactChunk(
                            file_index=index, offset=position, data=data
                        )
                        position += len(data)
                        sent += len(data)
        finally:
            self._streams.release()

    def _readable(self, caller: str, id_or_prefix: str) -> Artifact:
        try:
            artifact = self._artifacts.get(id_or_prefix)
        except ArtifactNotFound:
            raise ArtifactNotFound(f"no model {id_or_prefix[:64]} here") from None
        if caller not in artifact.readers:
            # Same answer whether it exists or not would hide less than it costs: the id is
            # content-derived, so knowing it already means knowing the model exists.
            raise NotShared(f"model {artifact.id[:12]} is not shared with node {caller}")
        return artifact


class Busy(ArtifactError):
    """Every download slot is taken: the caller should retry shortly."""

    reason = "busy"


class ArtifactsServicer(artifacts_pb2_grpc.ArtifactsServicer):
    """gRPC adapter of ArtifactService; the caller is the authenticated TLS peer."""

    def __init__(self, service: ArtifactService) -> None:
        self._service = service

    def List(
        self, request: artifacts_pb2.ListArtifactsRequest, context: grpc.ServicerContext
    ) -> artifacts_pb2.ListArtifactsResponse:
        with rpc_boundary(context, "Artifacts.List"):
            return self._service.list(_caller(context), request)
        raise AssertionError("rpc_boundary aborts")

    def GetManifest(
        self, request: artifacts_pb2.GetManifestRequest, context: grpc.ServicerContext
    ) -> artifacts_pb2.GetManifestResponse:
        with rpc_boundary(context, "Artifacts.GetManifest"):
            return self._service.get_manifest(_caller(context), request)
        raise AssertionError("rpc_boundary aborts")

    def Download(
        self, request: artifacts_pb2.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[artifacts_pb2.ArtifactChunk]:
        method = "Artifacts.Download"
        try:
            chunks = self._service.download(_caller(context), request)
        except Busy as exc:
            log_limited(f"busy {method}", "request refused", logging.INFO, method=method)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except GridpointError as exc:
            abort_with(context, method, exc)
        with rpc_boundary(context, method):
            yield from chunks


def _caller(context: grpc.ServicerContext) -> str:
    """The caller's node id: the common name of the certificate the interceptor checked
    against the request's signer and the pin."""
    names = [bytes(n) for n in context.auth_context().get("x509_common_name", ())]
    if not names:
        log_limited("artifacts no caller", "request refused", logging.WARNING)
        raise RequestError("the caller presented no certificate")
    return names[0].decode()
