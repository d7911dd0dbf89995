"""The peer transport seam: what a node asks of one trusted peer, whatever carries it.

PeerTransport holds what every transport shares: each request is serialized here exactly
once and those bytes are signed (RequestAuth), answers are decoded, and Hello is checked to
be signed by the node the transport was opened for. A subclass supplies only the round trip
of raw bytes: over mutual-TLS gRPC (grpc_transport.py) or in-process (inprocess.py, for
tests). Failures come out as PeerError / RequestError, never as a transport's own exception.
A transport can be given a deadline for everything it still does (sync sets one per peer and
round): no call starts after it, and a call in flight waits at most until then.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from gridpoint.errors import EnvelopeError, PeerError, PeerUnavailable
from gridpoint.node.protocol.envelope import verify_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.methods import HELLO, QUERY, SYNC
from gridpoint.node.protocol.request_auth import sign_request
from gridpoint.node.store.base import Peer
from gridpoint.v1 import catalog_pb2, envelope_pb2, node_pb2

__all__ = ["Connector", "PeerInfo", "PeerTransport", "SyncBatch"]

T = TypeVar("T", bound=Message)


@dataclass(frozen=True)
class PeerInfo:
    """What a peer said about itself, verified as signed by its identity key."""

    node_id: str
    name: str
    tls_fingerprint: str
    software_version: str


@dataclass(frozen=True)
class SyncBatch:
    """One page of a peer's catalog, as received (not yet verified)."""

    envelopes: list[envelope_pb2.SignedEnvelope]
    next_cursor: str
    has_more: bool


class PeerTransport(ABC):
    """Calls one peer, as `identity`. Close it when done (it is a context manager)."""

    def __init__(self, identity: NodeIdentity, address: str, peer_node_id: str) -> None:
        self._identity = identity
        self.address = address
        self.peer_node_id = peer_node_id
        #: time.monotonic() after which no call is made; None for no deadline.
        self.deadline: float | None = None

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
        try:
            return response_type.FromString(raw)
        except DecodeError:
            raise PeerError(f"peer {self.address} sent a malformed answer") from None

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

    def sync_page(self, cursor: str, limit: int) -> SyncBatch:
        """The page of the peer's catalog after cursor."""
        page = self._call(
            SYNC, catalog_pb2.SyncRequest(cursor=cursor, limit=limit), catalog_pb2.SyncPage
        )
        return SyncBatch(list(page.envelopes), page.next_cursor, page.has_more)

    def query(
        self, filter_text: str, limit: int, order_by: str
    ) -> list[envelope_pb2.SignedEnvelope]:
        """The peer's records matching a filter (not yet verified)."""
        request = catalog_pb2.QueryRequest(filter=filter_text, limit=limit, order_by=order_by)
        return list(self._call(QUERY, request, catalog_pb2.QueryResponse).envelopes)


#: Opens a transport to a stored peer; sync and live query are handed one.
Connector = Callable[[Peer], AbstractContextManager[PeerTransport]]
