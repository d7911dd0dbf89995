"""What a node answers on gridpoint.v1.Artifacts: the manifests a caller may fetch, and chunks.

Authentication happened before (the daemon's interceptor: signed request, pinned TLS
certificate of a trusted peer; in process, NodeService.handle_stream); here the caller's
node id decides what it may fetch: an artifact's readers, nobody else. A refusal is
PERMISSION_DENIED and a rate-limited log line naming the method and the caller, never a
group name or a path.

Every cost a request can cause is bounded: manifests per answer (and the message budget),
concurrent downloads (MAX_STREAMS slots; more are told Busy, RESOURCE_EXHAUSTED), bytes per
download stream (MAX_STREAM_BYTES), and memory (one chunk read at a time). A slot is held at
most MAX_STREAM_S, and at most MAX_IDLE_S since its reader last took a chunk. A stream ends
by itself between two chunks; a server waiting on a reader's flow control never gets there,
so a watchdog takes the slot back and cancels the call, and a reader that stops reading
cannot keep the slots from others. Either way the reader resumes with a new request. A
cancelled stream frees its slot at once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import grpc

from gridpoint.errors import (
    ArtifactError,
    ArtifactNotFound,
    Busy,
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
    "MAX_IDLE_S",
    "MAX_LIST",
    "MAX_STREAMS",
    "MAX_STREAM_BYTES",
    "MAX_STREAM_S",
    "ArtifactService",
    "ArtifactsServicer",
    "Download",
]

#: Most manifests one List answers.
MAX_LIST = 1000
#: Downloads served at once; the daemon's worker threads are shared with sync and query.
MAX_STREAMS = 2
#: Most bytes, and seconds, one download stream serves before it ends (the client resumes).
MAX_STREAM_BYTES = 1 << 30
MAX_STREAM_S = 300.0
#: Seconds a download keeps its slot while its reader takes no chunk.
MAX_IDLE_S = 30.0
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_PREFIX = re.compile(r"[0-9a-f]{8,64}")
_OVERHEAD = 16 * 1024


@dataclass
class _Lease:
    """One download slot: when it was taken, when its reader last took a chunk, and how to
    end its stream from outside (gRPC: cancel the call)."""

    cancel: Callable[[], object]
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    released: bool = False


class _Slots:
    """At most `size` leases; a watchdog thread (alive while any lease is) takes back those
    held max_s, or whose reader took no chunk for idle_s, and ends their streams."""

    def __init__(self, size: int, max_s: float, idle_s: float) -> None:
        self._size, self._max_s, self._idle_s = size, max_s, idle_s
        self._leases: list[_Lease] = []
        self._lock = threading.Lock()
        self._watching = False

    def take(self, cancel: Callable[[], object]) -> _Lease:
        with self._lock:
            if len(self._leases) >= self._size:
                raise Busy("this node is serving as many downloads as it allows; retry shortly")
            lease = _Lease(cancel)
            self._leases.append(lease)
            if not self._watching:
                self._watching = True
                threading.Thread(target=self._watch, name="gridpoint-slots", daemon=True).start()
            return lease

    def ends(self, lease: _Lease) -> float:
        """When the lease is taken back unless its reader takes a chunk before."""
        return min(lease.started + self._max_s, lease.last + self._idle_s)

    def progress(self, lease: _Lease) -> None:
        with self._lock:
            lease.last = time.monotonic()

    def release(self, lease: _Lease) -> None:
        with self._lock:
            if not lease.released:
                lease.released = True
                self._leases.remove(lease)

    def _watch(self) -> None:
        while True:
            with self._lock:
                if not self._leases:
                    self._watching = False
                    return
                now = time.monotonic()
                over = [lease for lease in self._leases if self.ends(lease) <= now]
                for lease in over:
                    lease.released = True
                    self._leases.remove(lease)
                soonest = min((self.ends(lease) for lease in self._leases), default=now)
            for lease in over:
                lease.cancel()
            # A lease's deadline moves with its reader: look again at least every second.
            time.sleep(min(max(soonest - now, 0.01), 1.0))


@dataclass(frozen=True)
class Download:
    """A started download: its chunks (a generator holding a slot until it ends) and how to
    free the slot early (the call was cancelled)."""

    chunks: Iterator[artifacts_pb2.ArtifactChunk]
    release: Callable[[], None]


class ArtifactService:
    """The Artifacts answers of one node, for an authenticated caller."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        max_message_bytes: int,
        *,
        max_stream_s: float = MAX_STREAM_S,
        max_idle_s: float = MAX_IDLE_S,
    ) -> None:
        self._artifacts = artifacts
        self._budget = max_message_bytes - _OVERHEAD
        self._slots = _Slots(MAX_STREAMS, max_stream_s, max_idle_s)

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
        self,
        caller: str,
        request: artifacts_pb2.DownloadRequest,
        cancel: Callable[[], object] = lambda: None,
    ) -> Download:
        """Checks the request and takes a slot (Busy when none is free); cancel ends the
        stream from outside when it outlives its slot's bounds."""
        if not _FULL_ID.fullmatch(request.artifact_id):
            raise RequestError("artifact_id must be the full id (64 lowercase hex digits)")
        artifact = self._readable(caller, request.artifact_id)
        manifest = decode_manifest(artifact.envelope().payload)
        if request.file_index >= len(manifest.files):
            raise RequestError(f"file_index must be below {len(manifest.files)}")
        start = manifest.files[request.file_index]
        if request.offset % manifest.chunk_size or request.offset > start.size:
            raise RequestError("offset must be a multiple of the chunk size inside the file")
        lease = self._slots.take(cancel)
        chunks = self._chunks(
            lease, artifact, manifest.chunk_size, request.file_index, request.offset
        )
        return Download(chunks, lambda: self._slots.release(lease))

    def _chunks(
        self, lease: _Lease, artifact: Artifact, chunk_size: int, first: int, offset: int
    ) -> Iterator[artifacts_pb2.ArtifactChunk]:
        sent = 0
        folder = self._artifacts.folder(artifact)
        try:
            for index in range(first, len(artifact.files)):
                f = artifact.files[index]
                position = offset if index == first else 0
                with (folder / PurePosixPath(f.path)).open("rb") as src:
                    src.seek(position)
                    while position < f.size:
                        # Past its bounds, or its slot taken back by the watchdog: end here
                        # (the reader resumes with a new request).
                        if (
                            sent >= MAX_STREAM_BYTES
                            or lease.released
                            or time.monotonic() > self._slots.ends(lease)
                        ):
                            return
                        data = src.read(min(chunk_size, f.size - position))
                        if len(data) != min(chunk_size, f.size - position):
                            raise ArtifactError("the stored copy of this model is damaged")
                        yield artifacts_pb2.ArtifactChunk(
                            file_index=index, offset=position, data=data
                        )
                        self._slots.progress(lease)
                        position += len(data)
                        sent += len(data)
        finally:
            self._slots.release(lease)

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
            download = self._service.download(_caller(context), request, context.cancel)
        except Busy as exc:
            log_limited(f"busy {method}", "request refused", logging.INFO, method=method)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except GridpointError as exc:
            abort_with(context, method, exc)
        # The call can end while this thread waits on the reader (cancelled, deadline): the
        # slot is freed then, not when this generator is collected.
        context.add_callback(download.release)
        with rpc_boundary(context, method):
            yield from download.chunks


def _caller(context: grpc.ServicerContext) -> str:
    """The caller's node id: the common name of the certificate the interceptor checked
    against the request's signer and the pin."""
    names = [bytes(n) for n in context.auth_context().get("x509_common_name", ())]
    if not names:
        log_limited("artifacts no caller", "request refused", logging.WARNING)
        raise RequestError("the caller presented no certificate")
    return names[0].decode()
