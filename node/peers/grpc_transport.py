"""The real peer transport: gRPC over mutual TLS, pinned to the peer's own certificate.

Each call waits at most the configured timeout, a stream at most STREAM_TIMEOUT_S (the
server ends its own sooner; the caller resumes), and neither past the transport's deadline.
Every answer it takes is bounded by the message limit, never below one chunk of the largest
size a manifest allows, and what a peer may send ahead of the reader by a fixed window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from gridpoint.errors import GridpointError, PeerRefused, PeerUnavailable
from gridpoint.node.artifacts.manifest import MAX_CHUNK
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.diagnose import refuses_our_certificate
from gridpoint.node.peers.transport import (
    IDLE_TIMEOUT_S,
    Connector,
    MessageStream,
    PeerTransport,
)
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY
from gridpoint.node.protocol.rpc_errors import status_to_error
from gridpoint.node.protocol.tls import TlsMaterial, tls_hostname
from gridpoint.node.store.base import Peer

__all__ = [
    "MIN_MESSAGE_BYTES",
    "RECEIVE_WINDOW_BYTES",
    "STREAM_TIMEOUT_S",
    "Diagnosis",
    "GrpcTransport",
    "grpc_connector",
]

#: Longest one stream may take (the server ends its own at 300 s; the caller resumes).
STREAM_TIMEOUT_S = 600.0
#: The least message limit a transport takes: the largest chunk a manifest allows, with room
#: for the chunk message's own fields.
MIN_MESSAGE_BYTES = MAX_CHUNK + 64 * 1024
#: What a peer may send ahead of what this node has read, per stream. gRPC would otherwise
#: grow it by probing the bandwidth-delay product, and while a reader is busy (hashing,
#: writing, short of CPU) the peer fills it: that is where a pull's memory went (95 MB above
#: idle for 2 GiB, 200+ MB under load). A fixed window of a few chunks keeps the rate on
#: loopback; over a link it caps one stream at about this window per round trip.
RECEIVE_WINDOW_BYTES = 8 * 1024 * 1024


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
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        diagnose: Diagnosis | None = None,
    ) -> None:
        super().__init__(identity, address, peer_node_id, idle_timeout_s=idle_timeout_s)
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
                ("grpc.max_receive_message_length", max(max_message_bytes, MIN_MESSAGE_BYTES)),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.http2.bdp_probe", 0),
                ("grpc.http2.lookahead_bytes", RECEIVE_WINDOW_BYTES),
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
            raise self.error(err) from None
        return raw

    def open_stream(self, method: str, body: bytes, auth: bytes) -> MessageStream:
        stub: grpc.UnaryStreamMultiCallable[bytes, bytes] = self._channel.unary_stream(
            method, request_serializer=None, response_deserializer=None
        )
        left = self.remaining_s()
        timeout = STREAM_TIMEOUT_S if left is None else min(STREAM_TIMEOUT_S, left)
        return _GrpcStream(self, stub(body, metadata=((AUTH_METADATA_KEY, auth),), timeout=timeout))

    def error(self, err: grpc.RpcError) -> GridpointError:
        """What a failed call means, told apart from "does not trust us" when it can be."""
        error = status_to_error(err, self.address)
        if isinstance(error, PeerUnavailable) and self._diagnose is not None:
            error = self._diagnose.explain(self.address) or error
        return error


class _GrpcStream(MessageStream):
    """A server-streaming call's answers; its failures as GridpointErrors."""

    def __init__(self, transport: GrpcTransport, call: grpc.Call) -> None:
        self._transport = transport
        self._call = call

    def __next__(self) -> bytes:
        try:
            raw: bytes = next(self._call)  # type: ignore[call-overload]
        except grpc.RpcError as err:
            raise self._transport.error(err) from None
        return raw

    def cancel(self) -> None:
        self._call.cancel()


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
            idle_timeout_s=home.config.sync.idle_timeout_s,
            max_message_bytes=home.config.security.max_message_bytes,
            diagnose=Diagnosis(home.tls_cert_path, home.tls_key_path, home.tls_fingerprint),
        )

    return connect
