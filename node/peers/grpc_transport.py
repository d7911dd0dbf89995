"""The real peer transport: gRPC over mutual TLS, pinned to the peer's own certificate.

Each call waits at most the configured timeout, and never past the transport's deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from gridpoint.errors import PeerRefused, PeerUnavailable
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.diagnose import refuses_our_certificate
from gridpoint.node.peers.transport import Connector, PeerTransport
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY
from gridpoint.node.protocol.rpc_errors import status_to_error
from gridpoint.node.protocol.tls import TlsMaterial, tls_hostname
from gridpoint.node.store.base import Peer

__all__ = ["Diagnosis", "GrpcTransport", "grpc_connector"]


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
        diagnose: Diagnosis | None = None,
    ) -> None:
        super().__init__(identity, address, peer_node_id)
        self._timeout = timeout_s
        self._diagnose = diagnose
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
        left = self.remaining_s()
        timeout = self._timeout if left is None else min(self._timeout, left)
        try:
            raw = stub(body, metadata=((AUTH_METADATA_KEY, auth),), timeout=timeout)
        except grpc.RpcError as err:
            error = status_to_error(err, self.address)
            if isinstance(error, PeerUnavailable) and self._diagnose is not None:
                error = self._diagnose.explain(self.address) or error
            raise error from None
        return raw


@dataclass(frozen=True)
class Diagnosis:
    """What a GrpcTransport needs to tell "down" from "does not trust us" (see diagnose.py)."""

    cert_path: Path
    key_path: Path
    fingerprint: str

    def explain(self, address: str) -> PeerRefused | None:
        """A PeerRefused saying what the peer must run, when it refused our certificate."""
        if not refuses_our_certificate(address, self.cert_path, self.key_path):
            return None
        return PeerRefused(
            f"peer {address} refused this node's certificate: it does not trust this node "
            f"yet; on the peer run: gridpoint peer add <this node's address> "
            f"--fingerprint {self.fingerprint}"
        )


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
            diagnose=Diagnosis(home.tls_cert_path, home.tls_key_path, home.tls_fingerprint),
        )

    return connect
