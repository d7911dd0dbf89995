"""The peer transport seam: what a node asks of one trusted peer, whatever carries it.

PeerTransport holds what every transport shares: each request is serialized here exactly
once and those bytes are signed (RequestAuth), answers are decoded (one that does not parse
is PeerMisbehaved), and Hello is checked to be signed by the node the transport was opened
for. A subclass supplies only the carriage of raw bytes, one answer (round_trip) or a stream
of them (open_stream): over mutual-TLS gRPC (grpc_transport.py) or in-process (inprocess.py,
for tests). Failures come out as GridpointErrors, never as a transport's own exception.

A transport can be given a deadline for everything it still does (sync sets one per peer and
round): no call starts after it, and a call in flight waits at most until then. A stream is
also given up when no message arrives for idle_timeout_s (a peer that went silent), and
closing its iterator early cancels it.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from gridpoint.errors import (
    EnvelopeError,
    GridpointError,
    PeerError,
    PeerMisbehaved,
    PeerUnavailable,
)
from gridpoint.node.protocol.envelope import verify_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.methods import (
    ARTIFACTS_DOWNLOAD,
    ARTIFACTS_GET_MANIFEST,
    ARTIFACTS_LIST,
    FETCH,
    HELLO,
    QUERY,
    SYNC,
)
from gridpoint.node.protocol.request_auth import sign_request
from gridpoint.node.store.base import Peer
from gridpoint.v1 import artifacts_pb2, catalog_pb2, envelope_pb2, node_pb2

__all__ = [
    "IDLE_TIMEOUT_S",
    "Chunk",
    "Connector",
    "Fetched",
    "ManifestList",
    "MessageStream",
    "PeerInfo",
    "PeerTransport",
    "RecordRef",
    "SyncBatch",
    "decode_answer",
    "decode_chunk",
]

T = TypeVar("T", bound=Message)

#: Seconds a stream may go without a message before the peer is given up as silent.
IDLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PeerInfo:
    """What a peer said about itself, verified as signed by its identity key."""

    node_id: str
    name: str
    tls_fingerprint: str
    software_version: str


@dataclass(frozen=True)
class RecordRef:
    """A record a refs_only page offered: the id we would receive, the id to fetch it by."""

    id: str
    fetch_id: str


@dataclass(frozen=True)
class SyncBatch:
    """One page of a peer's catalog, as received (not yet verified): envelopes, and with
    refs_only the records offered by reference (a peer that predates it sends none)."""

    envelopes: list[envelope_pb2.SignedEnvelope]
    next_cursor: str
    has_more: bool
    refs: list[RecordRef] = field(default_factory=list)
    #: Of refs, the ids this node held already (not fetched; the peer is still a source).
    held: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Fetched:
    """A Fetch answer: the envelopes (not yet verified) and how many ids it covers."""

    envelopes: list[envelope_pb2.SignedEnvelope]
    answered: int


@dataclass(frozen=True)
class ManifestList:
    """The manifests a peer lets us fetch: serialized SignedEnvelopes, not yet verified."""

    envelopes: list[bytes]
    truncated: bool


@dataclass(frozen=True)
class Chunk:
    """One chunk of an artifact's file, as received (not yet checked against a manifest)."""

    file_index: int
    offset: int
    data: bytes


class MessageStream(ABC):
    """The answers of one streaming call, as raw messages.

    next() blocks until the next message (StopIteration at the end, a GridpointError when
    the call fails); cancel(), from any thread and any number of times, ends the call and
    wakes a blocked next().
    """

    def __iter__(self) -> MessageStream:
        return self

    @abstractmethod
    def __next__(self) -> bytes: ...

    @abstractmethod
    def cancel(self) -> None: ...


class PeerTransport(ABC):
    """Calls one peer, as `identity`. Close it when done (it is a context manager)."""

    def __init__(
        self,
        identity: NodeIdentity,
        address: str,
        peer_node_id: str,
        *,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self._identity = identity
        self.address = address
        self.peer_node_id = peer_node_id
        self.idle_timeout_s = idle_timeout_s
        #: time.monotonic() after which no call is made; None for no deadline.
        self.deadline: float | None = None
        #: Bytes of the answers received so far (unary calls), for reports and benches.
        self.received_bytes = 0

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (None without one); PeerUnavailable once past."""
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PeerUnavailable(f"peer {self.address}: the time allowed for this peer ran out")
        return left

    @abstractmethod
    def round_trip(self, method: str, body: bytes, auth: bytes) -> bytes:
        """Sends a signed request's exact bytes; returns the answer's bytes or raises."""

    @abstractmethod
    def open_stream(self, method: str, body: bytes, auth: bytes) -> MessageStream:
        """Sends a signed request's exact bytes to a method that answers with a stream."""

    @abstractmethod
    def close(self) -> None:
        """Releases what the transport holds (a channel, ...)."""

    def __enter__(self) -> PeerTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Message, response_type: type[T]) -> T:
        body = request.SerializeToString()
        self.remaining_s()
        raw = self.round_trip(method, body, sign_request(self._identity, method, body))
        self.received_bytes += len(raw)
        return decode_answer(raw, response_type, self.address)

    def _stream(self, method: str, request: Message) -> Generator[bytes, None, None]:
        """The raw answers of a streaming call, each waited for at most idle_timeout_s (and
        never past the deadline); closing the iterator cancels the call."""
        body = request.SerializeToString()
        self.remaining_s()
        answers = self.open_stream(method, body, sign_request(self._identity, method, body))
        watch = _Watch(answers.cancel)
        try:
            while True:
                left = self.remaining_s()
                wait = self.idle_timeout_s if left is None else min(self.idle_timeout_s, left)
                watch.arm(wait)
                try:
                    raw = next(answers)
                except StopIteration:
                    return
                except GridpointError:
                    if watch.fired:
                        raise PeerUnavailable(
                            f"peer {self.address} sent nothing for {wait:.0f} s; gave it up"
                        ) from None
                    raise
                finally:
                    watch.disarm()
                yield raw
        finally:
            watch.stop()
            answers.cancel()

    def hello(self) -> PeerInfo:
        """The peer's NodeInfo, checked to be signed by the node its certificate names."""
        response = self._call(HELLO, node_pb2.HelloRequest(), node_pb2.HelloResponse)
        try:
            verified = verify_envelope(
                response.envelope,
                expected_type=node_pb2.NodeInfo.DESCRIPTOR.full_name,
                is_trusted=lambda signer: signer == self.peer_node_id,
                max_age_s=300,
            )
            info = node_pb2.NodeInfo.FromString(verified.payload)
        except (EnvelopeError, DecodeError) as exc:
            raise PeerError(
                f"peer {self.address} answered Hello with a bad identity: {exc}"
            ) from None
        return PeerInfo(info.node_id, info.name, info.tls_fingerprint, info.software_version)

    def sync_page(self, cursor: str, limit: int, *, refs_only: bool = False) -> SyncBatch:
        """The page of the peer's catalog after cursor; with refs_only, its records by
        reference (PeerMisbehaved for a reference that is not a 32-byte id)."""
        request = catalog_pb2.SyncRequest(cursor=cursor, limit=limit, refs_only=refs_only)
        page = self._call(SYNC, request, catalog_pb2.SyncPage)
        refs = []
        for ref in page.refs:
            if len(ref.id) != 32 or len(ref.stored_id) not in (0, 32):
                raise PeerMisbehaved(f"peer {self.address} offered a record id that is not one")
            refs.append(RecordRef(ref.id.hex(), (ref.stored_id or ref.id).hex()))
        return SyncBatch(list(page.envelopes), page.next_cursor, page.has_more, refs)

    def fetch(self, ids: list[str]) -> Fetched:
        """The records a refs_only page offered, by their fetch ids (not yet verified)."""
        request = catalog_pb2.FetchRequest(ids=[bytes.fromhex(i) for i in ids])
        answer = self._call(FETCH, request, catalog_pb2.FetchResponse)
        if answer.answered > len(ids) or len(answer.envelopes) > len(ids):
            raise PeerMisbehaved(f"peer {self.address} answered more than it was asked")
        return Fetched(list(answer.envelopes), answer.answered)

    def query(
        self, filter_text: str, limit: int, order_by: str
    ) -> list[envelope_pb2.SignedEnvelope]:
        """The peer's records matching a filter (not yet verified)."""
        request = catalog_pb2.QueryRequest(filter=filter_text, limit=limit, order_by=order_by)
        return list(self._call(QUERY, request, catalog_pb2.QueryResponse).envelopes)

    def artifact_manifests(self, limit: int = 0) -> ManifestList:
        """The manifests of the artifacts the peer lets us fetch (0: its default count)."""
        request = artifacts_pb2.ListArtifactsRequest(limit=limit)
        answer = self._call(ARTIFACTS_LIST, request, artifacts_pb2.ListArtifactsResponse)
        return ManifestList(
            [m.SerializeToString(deterministic=True) for m in answer.manifests], answer.truncated
        )

    def artifact_manifest(self, artifact_id: str) -> bytes:
        """One artifact's signed manifest envelope (serialized), not yet verified."""
        request = artifacts_pb2.GetManifestRequest(artifact_id=artifact_id)
        answer = self._call(ARTIFACTS_GET_MANIFEST, request, artifacts_pb2.GetManifestResponse)
        return answer.manifest.SerializeToString(deterministic=True)

    def artifact_chunks(
        self, artifact_id: str, file_index: int, offset: int
    ) -> Generator[Chunk, None, None]:
        """The chunks from (file_index, offset) on, as the peer sends them; the peer may end
        the stream early (the caller resumes). Close the iterator to cancel."""
        request = artifacts_pb2.DownloadRequest(
            artifact_id=artifact_id, file_index=file_index, offset=offset
        )
        with closing(self._stream(ARTIFACTS_DOWNLOAD, request)) as answers:
            for raw in answers:
                yield decode_chunk(raw, self.address)


def decode_answer(raw: bytes, answer_type: type[T], source: str) -> T:
    """An answer's message; PeerMisbehaved when the bytes are not one."""
    try:
        return answer_type.FromString(raw)
    except DecodeError:
        raise PeerMisbehaved(f"peer {source} sent an answer that does not parse") from None


def decode_chunk(raw: bytes, source: str) -> Chunk:
    """A Download answer's chunk; PeerMisbehaved when the bytes are not one."""
    chunk = decode_answer(raw, artifacts_pb2.ArtifactChunk, source)
    return Chunk(chunk.file_index, chunk.offset, chunk.data)


class _Watch:
    """Cancels a stream when one wait for its next message lasts too long (one thread per
    stream, asleep while nothing is awaited)."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel
        self._cond = threading.Condition()
        self._until: float | None = None
        self._done = False
        self.fired = False
        self._thread = threading.Thread(
            target=self._run, name="gridpoint-stream-watch", daemon=True
        )
        self._thread.start()

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._until = time.monotonic() + seconds
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._until = None

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._done:
                if self._until is None:
                    self._cond.wait()
                    continue
                left = self._until - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.fired = self._done = True
        if self.fired:
            self._cancel()


#: Opens a transport to a stored peer; sync and live query are handed one.
Connector = Callable[[Peer], AbstractContextManager[PeerTransport]]
