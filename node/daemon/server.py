"""The gRPC service a node offers its trusted peers: Hello, Catalog, Artifacts, health.

Servicers read the store and answer (the catalog's calls as raw bytes, by the service or by
the answering processes, which decode and encode them); authentication happens before them,
in node/daemon/interceptors.py, and mutual TLS before that: a client must present the
certificate of a trusted peer. Past security.max_concurrent_calls calls at once (served or queued), a call is
refused at once as busy (RESOURCE_EXHAUSTED), never queued behind seconds of others. The set of accepted client certificates is re-read at each handshake, so
`peer add` / `peer remove` take effect without a restart.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gridpoint.errors import ConfigError, in_words
from gridpoint.node.artifacts.service import ArtifactsServicer
from gridpoint.node.daemon.answer_processes import Answerer, AnswerProcesses
from gridpoint.node.daemon.answering import AnsweringLimit
from gridpoint.node.daemon.interceptors import AUTHENTICATED_CALLER, RequestAuthInterceptor
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.methods import FETCH, QUERY, SYNC
from gridpoint.node.protocol.rpc_errors import rpc_boundary
from gridpoint.node.protocol.tls import bind_error, split_address
from gridpoint.node.store.base import CatalogStore
from gridpoint.v1 import (
    artifacts_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
)

__all__ = ["ANSWERING_AT_ONCE", "WORKERS", "NodeServer", "answered_by", "start_server"]

#: Threads answering calls; calls past them wait, up to security.max_concurrent_calls in all.
WORKERS = 8
#: Unary calls answered at once (answering.py says why so few); the other workers wait
#: their turn or serve model downloads.
ANSWERING_AT_ONCE = 2


class NodeServicer(node_pb2_grpc.NodeServicer):
    """gRPC adapter of NodeService.hello."""

    def __init__(self, service: NodeService) -> None:
        self._service = service

    def Hello(
        self, request: node_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> node_pb2.HelloResponse:
        with rpc_boundary(context, "Hello"):
            return self._service.hello()


def answered_by(answer: Answerer) -> grpc.GenericRpcHandler:
    """Catalog.Sync, .Fetch and .Query answered by answer (the service itself, or the
    answering processes), raw bytes in and out: the request is decoded, and the answer
    encoded, only where it is answered."""

    def handler(method: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        name = method.rsplit("/", 1)[1]

        def answered(raw: bytes, context: grpc.ServicerContext) -> bytes:
            with rpc_boundary(context, name):
                return answer(method, AUTHENTICATED_CALLER.get(), raw)

        return grpc.unary_unary_rpc_method_handler(answered)

    # Every method path is "/<service>/<method>".
    service = QUERY.split("/")[1]
    return grpc.method_handlers_generic_handler(
        service, {m.rsplit("/", 1)[1]: handler(m) for m in (SYNC, FETCH, QUERY)}
    )


def _trusted_roots(home: NodeHome, store: CatalogStore) -> bytes:
    # Our own certificate keeps the bundle non-empty when no peer is trusted yet.
    return b"".join([home.tls.cert_pem, *(p.cert_pem for p in store.list_peers())])


def server_credentials(home: NodeHome, store: CatalogStore) -> grpc.ServerCredentials:
    """mTLS credentials whose accepted client certificates follow the peer list. After a key
    rotation the retired certificates are still presented to a caller that names the old node
    id (TLS SNI), so a peer that has not re-pinned yet still connects (control/keys.py)."""
    current = {"roots": _trusted_roots(home, store)}
    pairs = [(home.tls.key_pem, home.tls.cert_pem), *home.retired_tls_pairs()]

    def config(roots: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(pairs, root_certificates=roots)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        roots = _trusted_roots(home, store)
        if roots == current["roots"]:
            return None
        current["roots"] = roots
        return config(roots)

    # gRPC reads None from fetch as "unchanged"; the stubs only allow a configuration.
    fetch_config = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
    return grpc.dynamic_ssl_server_credentials(
        config(current["roots"]), fetch_config, require_client_authentication=True
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


def _check_bindable(listen: str) -> None:
    """ConfigError, in one line, when the address is taken: gRPC itself would also print its
    own log line (whatever GRPC_VERBOSITY a library set) before failing."""
    host, port = split_address(listen, allow_port_zero=True)
    exc = bind_error(host, port) if port else None
    if exc is not None:
        why = (
            "the address is in use (another node or program)"
            if exc.errno == errno.EADDRINUSE
            else in_words(exc)
        )
        raise ConfigError(f"cannot listen on {listen}: {why}; pick another with --listen HOST:PORT")


def start_server(
    home: NodeHome,
    store: CatalogStore,
    listen: str,
    *,
    service: NodeService | None = None,
    answering: AnswerProcesses | None = None,
) -> NodeServer:
    """Builds, binds and starts the node's gRPC server (answering with service, by default
    one of its own over home and store, and the catalog's calls by the answering processes
    when given); returns it with its bound port."""
    limits = home.config.security
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        # gRPC binds with SO_REUSEPORT by default: a second node on the same port would then
        # share its connections with the first instead of failing.
        ("grpc.so_reuseport", 0),
    ]

    service = service or NodeService(home, store)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS),
        # The limit first: a call waits for its turn before it is even authenticated.
        interceptors=[
            # As many at once as there are answering processes to answer them.
            AnsweringLimit(max(ANSWERING_AT_ONCE, answering.count if answering else 0)),
            RequestAuthInterceptor(service.authenticate),
        ],
        options=options,
        # Admission: past this many calls in progress or queued, gRPC answers
        # RESOURCE_EXHAUSTED at once (the caller's Busy) rather than queueing without bound.
        maximum_concurrent_rpcs=limits.max_concurrent_calls,
    )
    node_pb2_grpc.add_NodeServicer_to_server(NodeServicer(service), server)
    server.add_generic_rpc_handlers(
        (answered_by(service.answer if answering is None else answering.answer),)
    )
    artifacts_pb2_grpc.add_ArtifactsServicer_to_server(ArtifactsServicer(service.artifacts), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _check_bindable(listen)
    try:
        port = server.add_secure_port(listen, server_credentials(home, store))
    except RuntimeError:  # grpcio >= 1.60 raises where older versions returned 0
        port = 0
    if port == 0:
        raise ConfigError(
            f"cannot listen on {listen}: the address is in use (another node or program) "
            "or not an address of this machine; pick another with --listen HOST:PORT"
        )
    server.start()
    for name in ("", "gridpoint.v1.Node", "gridpoint.v1.Catalog", "gridpoint.v1.Artifacts"):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return NodeServer(server=server, port=port, health=health_servicer)
