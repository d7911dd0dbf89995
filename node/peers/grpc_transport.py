"""The real peer transport: gRPC over mutual TLS, pinned to the peer's own certificate."""

from __future__ import annotations

import grpc

from gridpoint.node.home import NodeHome
from gridpoint.node.peers.transport import Connector, PeerTransport
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY
from gridpoint.node.protocol.rpc_errors import status_to_error
from gridpoint.node.protocol.tls import TlsMaterial, tls_hostname
from gridpoint.node.store.base import Peer

__all__ = ["GrpcTransport", "grpc_connector"]


class GrpcTransport(PeerTransport):
    """Calls one peer over a secure channel that trusts only the peer's pinned certificate."""

    def __init__(
        self,
        identity: NodeIdentity,
        tls: TlsMaterial,
        address: str,
        peer_node_id: str,
        peer_cert_pem: bytes,
        *,
        max_message_bytes: int = 4 * 1024 * 1024,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(identity, address, peer_node_id)
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

    def round_trip(self, method: str, body: bytes, auth: bytes) -> bytes:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            method, request_serializer=None, response_deserializer=None
        )
        try:
            raw = stub(body, metadata=((AUTH_METADATA_KEY, auth),), timeout=self._timeout)
        except grpc.RpcError as err:
            raise status_to_error(err, self.address) from None
        return raw


def grpc_connector(home: NodeHome) -> Connector:
    """Opens GrpcTransports to stored peers with this node's identity and limits."""

    def connect(peer: Peer) -> GrpcTransport:
        return GrpcTransport(
            home.identity,
            home.tls,
            peer.address,
            peer.node_id,
            peer.cert_pem,
            timeout_s=home.config.sync.timeout_s,
            max_message_bytes=home.config.security.max_message_bytes,
        )

    return connect
