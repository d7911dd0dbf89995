"""The daemon answers two unary calls at a time; the rest wait their turn in order, for a
while, none is refused; a caller that left is not answered; neither a model download's
stream nor a health check waits for a turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gridpoint.node.daemon.answering import AnsweringLimit, Turns


class _Held:
    """Handlers that count how many run at once and wait until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.most = 0
        self.calls = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
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


def _serve(patience: float) -> Iterator[tuple[_Held, grpc.Channel]]:
    held = _Held()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[AnsweringLimit(2, patience=patience)],
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


@pytest.fixture
def served() -> Iterator[tuple[_Held, grpc.Channel]]:
    """Calls wait for their turn as long as their deadline lets them."""
    yield from _serve(patience=60.0)


@pytest.fixture
def impatient() -> Iterator[tuple[_Held, grpc.Channel]]:
    yield from _serve(patience=0.2)


def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _unary(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary("/t.T/Unary")


def _send(channel: grpc.Channel, n: int) -> list[Any]:
    """n calls at once (futures), the i-th asking back byte i."""
    call = _unary(channel)
    return [call.future(bytes([i]), timeout=30) for i in range(n)]


def _sent_until_running(held: _Held, channel: grpc.Channel, calls: int, running: int) -> list[Any]:
    """`calls` calls sent at once (futures), once `running` of them are held running."""
    pending = _send(channel, calls)
    _wait_for(lambda: held.running == running)
    return pending


def test_six_calls_at_once_are_answered_two_at_a_time_and_none_refused(
    served: tuple[_Held, grpc.Channel],
) -> None:
    held, channel = served
    # Execute: six calls at once, all held while they run.
    pending = _sent_until_running(held, channel, 6, 2)
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
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream("/t.T/Stream")
    pending = _sent_until_running(held, channel, 2, 2)
    # Execute
    streamed = list(stream(b"s", timeout=5))
    status = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
        health_pb2.HealthCheckRequest(service=""), timeout=5
    )
    # Assert
    assert streamed == [b"s", b"s"]
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert held.running == 2
    held.release.set()
    assert [f.result() for f in pending] == [b"\x00", b"\x01"]


def test_a_call_waits_for_a_turn_only_so_long_then_is_answered_without_one(
    impatient: tuple[_Held, grpc.Channel],
) -> None:
    held, channel = impatient
    # Execute: the third starts although both turns stay taken.
    pending = _sent_until_running(held, channel, 3, 3)
    held.release.set()
    # Assert
    assert [f.result() for f in pending] == [bytes([i]) for i in range(3)]


def test_a_call_whose_caller_left_while_it_waited_is_not_answered(
    served: tuple[_Held, grpc.Channel],
) -> None:
    held, channel = served
    pending = _sent_until_running(held, channel, 2, 2)
    # Execute: a third call gives up before a turn is free.
    with pytest.raises(grpc.RpcError) as refused:
        _unary(channel)(b"late", timeout=0.3)
    time.sleep(0.3)  # room for it to start, were it answered after all
    held.release.set()
    # Assert
    assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [f.result() for f in pending] == [b"\x00", b"\x01"]
    assert held.calls == 2


def test_turns_go_to_the_waiters_in_the_order_they_came() -> None:
    turns = Turns(1)
    assert turns.take(0)
    got: list[int] = []

    def wait(i: int) -> None:
        assert turns.take(30)
        got.append(i)
        turns.give_back()

    waiters = []
    for i in range(3):
        waiters.append(threading.Thread(target=wait, args=(i,)))
        waiters[-1].start()
        _wait_for(lambda n=i + 1: len(turns._waiting) == n)
    # Execute
    turns.give_back()
    for t in waiters:
        t.join(30)
    # Assert: in order, and the one turn free again
    assert got == [0, 1, 2]
    assert turns.take(0) and not turns.take(0.05)
