"""A client for one trusted peer's gRPC service, over mutual TLS with a pinned certificate.

Every request is serialized here exactly once and those bytes are signed (RequestAuth in
metadata), so the server verifies what was sent. grpc.RpcError never escapes: failures
come out as PeerError / RequestError (node/rpc_errors.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from gridpoint.errors import EnvelopeError, PeerError
from gridpoint.node.protocol.envelope import verify_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request
from gridpoint.node.protocol.rpc_errors import status_to_error
from gridpoint.node.protocol.tls import TlsMaterial, tls_hostname
from gridpoint.v1 import catalog_pb2, envelope_pb2, node_pb2

__all__ = ["PeerClient", "PeerInfo", "SyncBatch", "peer_client"]

T = TypeVar("T", bound=Message)

_HELLO = "/gridpoint.v1.Node/Hello"
_SYNC = "/gridpoint.v1.Catalog/Sync"
_QUERY = "/gridpoint.v1.Catalog/Query"


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


class PeerClient:
    """Calls one peer. Use peer_client() to get one that closes its channel."""

    def __init__(
        self,
        identity: NodeIdentity,
        tls: TlsMaterial,
        address: str,
        peer_node_id: str,
        peer_cert_pem: bytes,
        *,
        max_message_bytes: int,
        timeout_s: float,
    ) -> None:
        self._identity = identity
        self.address = address
        self.peer_node_id = peer_node_id
        self._timeout = timeout_s
        credentials = grpc.ssl_channel_credentials(
            root_certificates=peer_cert_pem,
            private_key=tls.key_pem,
            certificate_chain=tls.cert_pem,
        )
        self._channel = grpc.secure_channel(
            address,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", tls_hostname(peer_node_id)),
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Message, response_type: type[T]) -> T:
        body = request.SerializeToString()
        auth = sign_request(self._identity, method, body)
        stub = self._channel.unary_unary(
            method, request_serializer=None, response_deserializer=None
        )
        try:
            raw: bytes = stub(body, metadata=[(AUTH_METADATA_KEY, auth)], timeout=self._timeout)
        except grpc.RpcError as err:
            raise status_to_error(err, self.address) from None
        try:
            return response_type.FromString(raw)
        except DecodeError:
            raise PeerError(f"peer {self.address} sent a malformed answer") from None

    def hello(self) -> PeerInfo:
        """The peer's NodeInfo, checked to be signed by the node its certificate names."""
        response = self._call(_HELLO, node_pb2.HelloRequest(), node_pb2.HelloResponse)
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
        page = self._call(
            _SYNC, catalog_pb2.SyncRequest(cursor=cursor, limit=limit), catalog_pb2.SyncPage
        )
        return SyncBatch(list(page.envelopes), page.next_cursor, page.has_more)

    def query(
        self, filter_text: str, limit: int, order_by: str
    ) -> list[envelope_pb2.SignedEnvelope]:
        request = catalog_pb2.QueryRequest(filter=filter_text, limit=limit, order_by=order_by)
        return list(self._call(_QUERY, request, catalog_pb2.QueryResponse).envelopes)


@contextmanager
def peer_client(
    identity: NodeIdentity,
    tls: TlsMaterial,
    address: str,
    peer_node_id: str,
    peer_cert_pem: bytes,
    *,
    max_message_bytes: int = 4 * 1024 * 1024,
    timeout_s: float = 10.0,
) -> Iterator[PeerClient]:
    client = PeerClient(
        identity,
        tls,
        address,
        peer_node_id,
        peer_cert_pem,
        max_message_bytes=max_message_bytes,
        timeout_s=timeout_s,
    )
    try:
        yield client
    finally:
        client.close()
