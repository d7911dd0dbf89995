"""The daemon answers two unary calls at a time; the rest wait their turn, none is refused,
and neither a model download's stream nor a health check waits for a turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gridpoint.node.daemon.answering import AnsweringLimit


class _Held:
    """Handlers that count how many run at once and wait until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def unary(self, request: bytes, _context: Any) -> bytes:
        self._enter()
        try:
            self.release.wait(10)
            return request
        finally:
            self._leave()

    def stream(self, request: bytes, _context: Any) -> Iterator[bytes]:
        yield request
        yield request


@pytest.fixture
def served() -> Iterator[tuple[_Held, grpc.Channel]]:
    held = _Held()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), interceptors=[AnsweringLimit(2)]
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.T",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(held.unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(held.stream),
                },
            ),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield held, channel
    finally:
        held.release.set()
        channel.close()
        server.stop(0).wait()


def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_six_calls_at_once_are_answered_two_at_a_time_and_none_refused(
    served: tuple[_Held, grpc.Channel],
) -> None:
    held, channel = served
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.T/Unary")
    # Execute: six calls at once, all held while they run.
    pending = [call.future(bytes([i]), timeout=30) for i in range(6)]
    _wait_for(lambda: held.running == 2)
    time.sleep(0.3)  # room for a third to start, were it let in
    at_most = held.most
    held.release.set()
    answers = [f.result() for f in pending]
    # Assert
    assert at_most == 2
    assert answers == [bytes([i]) for i in range(6)]
    assert held.most == 2


def test_a_stream_and_a_health_check_do_not_wait_for_a_turn(
    served: tuple[_Held, grpc.Channel],
) -> None:
    held, channel = served
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/t.T/Unary")
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream("/t.T/Stream")
    pending = [call.future(b"u", timeout=30) for _ in range(2)]
    _wait_for(lambda: held.running == 2)
    # Execute: both turns taken
    streamed = list(stream(b"s", timeout=5))
    status = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    # Assert
    assert streamed == [b"s", b"s"]
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert held.running == 2
    held.release.set()
    assert [f.result() for f in pending] == [b"u", b"u"]
