"""Both peer transports behind one opener, for suites written once and run on each.

`TRANSPORTS` names them; `Opener` opens a transport from a caller node to a peer node of a
tests.inprocess.Network. The peer answers with its real NodeService, or with crafted
handlers (a hostile peer). In process, the handlers are called directly; over gRPC they are
served by a real grpc.server on loopback with the peer's own certificate over mutual TLS
(a raw-bytes adapter for crafted handlers, the node's real servicers otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Literal

import grpc

from gridpoint.errors import GridpointError
from gridpoint.node.daemon.server import NodeServer, start_server
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.peers.grpc_transport import GrpcTransport
from gridpoint.node.peers.inprocess import Handler, InProcessTransport, StreamHandler
from gridpoint.node.peers.transport import PeerTransport
from gridpoint.node.protocol.methods import ARTIFACTS_DOWNLOAD
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY
from gridpoint.node.protocol.rpc_errors import status_for
from tests.inprocess import Network, Node

Kind = Literal["inprocess", "grpc"]
TRANSPORTS: tuple[Kind, ...] = ("inprocess", "grpc")
MIB = 1024 * 1024


@dataclass
class Opener:
    """Opens transports of one kind; stops what it started when closed."""

    kind: Kind
    net: Network
    _servers: list[NodeServer] = field(default_factory=list)
    _raw_servers: list[grpc.Server] = field(default_factory=list)
    _transports: list[PeerTransport] = field(default_factory=list)

    def open(
        self,
        caller: Node,
        peer: Node,
        *,
        service: NodeService | None = None,
        handler: Handler | None = None,
        stream_handler: StreamHandler | None = None,
        idle_timeout_s: float = 30.0,
        max_message_bytes: int = 4 * MIB,
    ) -> PeerTransport:
        """A transport from caller to peer (which must trust caller, and caller it). The
        peer answers with service (default: its own), or with the crafted handlers."""
        service = service or peer.service
        unary = handler or service.handle
        stream = stream_handler or service.handle_stream
        transport: PeerTransport
        if self.kind == "inprocess":
            transport = InProcessTransport(
                caller.home.identity,
                f"inprocess:{peer.home.config.name}",
                peer.node_id,
                unary,
                stream,
                idle_timeout_s=idle_timeout_s,
                max_message_bytes=max_message_bytes,
            )
        else:
            crafted = handler is not None or stream_handler is not None
            address = (
                self._serve_raw(caller, peer, unary, stream)
                if crafted
                else self._serve_real(peer, service)
            )
            transport = GrpcTransport(
                caller.home.identity,
                caller.home.tls,
                address,
                peer.node_id,
                peer.home.tls.cert_pem,
                idle_timeout_s=idle_timeout_s,
                max_message_bytes=max_message_bytes,
            )
        self._transports.append(transport)
        return transport

    def _serve_real(self, peer: Node, service: NodeService) -> str:
        server: NodeServer = start_server(peer.home, peer.store, "127.0.0.1:0", service=service)
        self._servers.append(server)
        return f"127.0.0.1:{server.port}"

    def _serve_raw(self, caller: Node, peer: Node, unary: Handler, stream: StreamHandler) -> str:
        """A gRPC server answering every method with the handlers, on raw bytes."""

        def auth(context: grpc.ServicerContext) -> bytes | None:
            sent = dict(context.invocation_metadata() or ()).get(AUTH_METADATA_KEY)
            return sent if isinstance(sent, bytes) else None

        def answer(method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                return unary(method, raw, auth(context), caller.node_id)
            except GridpointError as exc:
                context.abort(status_for(exc), str(exc))
                raise

        def answers(method: str, raw: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
            try:
                yield from stream(method, raw, auth(context), caller.node_id)
            except GridpointError as exc:
                context.abort(status_for(exc), str(exc))

        class Raw(grpc.GenericRpcHandler):
            def service(
                self, details: grpc.HandlerCallDetails
            ) -> grpc.RpcMethodHandler[bytes, bytes]:
                method = details.method
                if method == ARTIFACTS_DOWNLOAD:
                    return grpc.unary_stream_rpc_method_handler(
                        lambda raw, context: answers(method, raw, context)
                    )
                return grpc.unary_unary_rpc_method_handler(
                    lambda raw, context: answer(method, raw, context)
                )

        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_send_message_length", 64 * MIB)],
        )
        server.add_generic_rpc_handlers((Raw(),))
        credentials = grpc.ssl_server_credentials(
            [(peer.home.tls.key_pem, peer.home.tls.cert_pem)],
            root_certificates=caller.home.tls.cert_pem,
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        self._raw_servers.append(server)
        return f"127.0.0.1:{port}"

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.stop(0.0)
        for raw in self._raw_servers:
            raw.stop(0).wait()
