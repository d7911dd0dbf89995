"""Admission: a node answers "busy" at once past its bound of calls, never queues them all."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gridpoint.errors import Busy, ConfigError
from gridpoint.node.daemon.server import start_server
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.grpc_transport import GrpcTransport
from gridpoint.node.store.base import CatalogStore
from gridpoint.v1 import envelope_pb2
from tests.helpers import signed_records
from tests.inprocess import Network, Node


class HeldQueries(NodeService):
    """A real NodeService whose catalog answers wait until released (calls kept in
    progress)."""

    def __init__(self, home: NodeHome, store: CatalogStore) -> None:
        super().__init__(home, store)
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def answer(self, method: str, caller: str, raw: bytes) -> bytes:
        self.started.release()
        self.release.wait(30)
        return super().answer(method, caller, raw)


def with_call_bound(node: Node, bound: int) -> NodeHome:
    text = node.home.config_path.read_text()
    node.home.config_path.write_text(
        text.replace("max_concurrent_calls = 32", f"max_concurrent_calls = {bound}")
    )
    return NodeHome(node.home.path)


def test_a_call_past_the_bound_is_refused_as_busy_at_once_and_served_once_room_is_back(
    net: Network,
) -> None:
    a, b = net.pair("A", "B")
    a.store.add_records(signed_records(a.home, 3))
    home = with_call_bound(a, 2)
    held = HeldQueries(home, a.store)
    server = start_server(home, a.store, "127.0.0.1:0", service=held)
    transports = [
        GrpcTransport(
            b.home.identity,
            b.home.tls,
            f"127.0.0.1:{server.port}",
            a.node_id,
            a.home.tls.cert_pem,
        )
        for _ in range(3)
    ]
    try:
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(t.query, "metrics.accuracy > 0", 10, "") for t in transports[:2]]
            for _ in range(2):
                assert held.started.acquire(timeout=10)

            # Refused while both held calls still run (a queued call would wait for them and
            # end past its deadline as unavailable, not busy).
            with pytest.raises(Busy, match="busy"):
                transports[2].query("metrics.accuracy > 0", 10, "")
            still_held = not any(f.done() for f in waiting)

            held.release.set()
            answered = [len(f.result(timeout=30)) for f in waiting]
        again = _once_room_is_back(transports[2])

        assert still_held
        assert answered == [3, 3]
        assert len(again) == 3
    finally:
        held.release.set()
        for transport in transports:
            transport.close()
        server.stop(0)


def _once_room_is_back(transport: GrpcTransport) -> list[envelope_pb2.SignedEnvelope]:
    """The query's answer once the server has let go of the two held calls. gRPC counts a
    call until its server side has finished, a moment after the client has the answer: a
    call sent at once was refused as busy in one full run (CI, 2 cores)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return transport.query("metrics.accuracy > 0", 10, "")
        except Busy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_call_bound_below_one_is_a_config_error(net: Network) -> None:
    a = net.add("A")
    home = with_call_bound(a, 0)

    with pytest.raises(ConfigError, match="max_concurrent_calls must be at least 1"):
        _ = home.config
