"""The gRPC service a node offers its trusted peers: Hello, Catalog.Sync, Catalog.Query, health.

Servicers read the store and answer; authentication happens before them, in
node/interceptors.py, and mutual TLS before that: a client must present the certificate of
a trusted peer. The set of accepted client certificates is re-read at each handshake, so
`peer add` / `peer remove` take effect without a restart.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gridpoint import __version__
from gridpoint.errors import ConfigError
from gridpoint.node.daemon.interceptors import RequestAuthInterceptor
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.request_auth import ReplayGuard
from gridpoint.node.protocol.rpc_errors import rpc_boundary
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.query_filter import parse_filter, parse_order_by
from gridpoint.v1 import catalog_pb2, catalog_pb2_grpc, envelope_pb2, node_pb2, node_pb2_grpc

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "NodeServer", "start_server"]

DEFAULT_PAGE = 500
MAX_PAGE = 5000
MAX_QUERY = 1000
# Room left in a message for everything around the envelopes.
_PAGE_OVERHEAD = 16 * 1024


class NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(self, home: NodeHome) -> None:
        info = node_pb2.NodeInfo(
            node_id=home.identity.node_id,
            name=home.config.name,
            public_key=home.identity.public_key,
            tls_fingerprint=home.tls_fingerprint,
            protocol="gridpoint.v1",
            software_version=__version__,
        )
        self._payload = info.SerializeToString()
        self._home = home

    def Hello(
        self, request: node_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> node_pb2.HelloResponse:
        envelope = sign_envelope(
            self._home.identity, self._payload, node_pb2.NodeInfo.DESCRIPTOR.full_name
        )
        return node_pb2.HelloResponse(envelope=envelope)


class CatalogServicer(catalog_pb2_grpc.CatalogServicer):
    def __init__(self, store: CatalogStore, max_message_bytes: int) -> None:
        self._store = store
        self._budget = max_message_bytes - _PAGE_OVERHEAD

    def Sync(
        self, request: catalog_pb2.SyncRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.SyncPage:
        with rpc_boundary(context, "Sync"):
            limit = min(request.limit or DEFAULT_PAGE, MAX_PAGE)
            page = self._store.records_after(request.cursor, limit)
            out = catalog_pb2.SyncPage(next_cursor=page.next_cursor, has_more=page.has_more)
            size = 0
            for index, envelope in enumerate(page.envelopes):
                size += len(envelope) + 8
                if size > self._budget and index > 0:
                    # Stop before the message limit; the peer resumes after the last one sent.
                    out.next_cursor = page.cursors[index - 1]
                    out.has_more = True
                    break
                out.envelopes.append(envelope_pb2.SignedEnvelope.FromString(envelope))
            return out

    def Query(
        self, request: catalog_pb2.QueryRequest, context: grpc.ServicerContext
    ) -> catalog_pb2.QueryResponse:
        with rpc_boundary(context, "Query"):
            where = parse_filter(request.filter)
            order = parse_order_by(request.order_by)
            limit = min(request.limit or 100, MAX_QUERY)
            out = catalog_pb2.QueryResponse()
            size = 0
            for record in self._store.query(where, limit=limit, order_by=order):
                size += len(record.envelope) + 8
                if size > self._budget:
                    break
                out.envelopes.append(envelope_pb2.SignedEnvelope.FromString(record.envelope))
            return out


def _trusted_roots(home: NodeHome, store: CatalogStore) -> bytes:
    # Our own certificate keeps the bundle non-empty when no peer is trusted yet.
    return b"".join([home.tls.cert_pem, *(p.cert_pem for p in store.list_peers())])


def server_credentials(home: NodeHome, store: CatalogStore) -> grpc.ServerCredentials:
    """mTLS credentials whose accepted client certificates follow the peer list."""
    current = {"roots": _trusted_roots(home, store)}

    def config(roots: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(home.tls.key_pem, home.tls.cert_pem)], root_certificates=roots
        )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        roots = _trusted_roots(home, store)
        if roots == current["roots"]:
            return None
        current["roots"] = roots
        return config(roots)

    return grpc.dynamic_ssl_server_credentials(
        config(current["roots"]), fetch, require_client_authentication=True
    )


@dataclass
class NodeServer:
    """A started server and the port it listens on."""

    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_server(home: NodeHome, store: CatalogStore, listen: str) -> NodeServer:
    """Builds, binds and starts the node's gRPC server; returns it with its bound port."""
    limits = home.config.security
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
    ]

    def is_peer(caller: str) -> bool:
        return store.get_peer(caller) is not None

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[RequestAuthInterceptor(is_peer, ReplayGuard(limits.request_window_s))],
        options=options,
    )
    node_pb2_grpc.add_NodeServicer_to_server(NodeServicer(home), server)
    catalog_pb2_grpc.add_CatalogServicer_to_server(
        CatalogServicer(store, limits.max_message_bytes), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port(listen, server_credentials(home, store))
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}: address in use or invalid")
    server.start()
    for service in ("", "gridpoint.v1.Node", "gridpoint.v1.Catalog"):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return NodeServer(server=server, port=port, health=health_servicer)
