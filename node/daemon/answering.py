"""Server interceptor that lets only a few unary calls be answered at once; the rest wait
their turn, in order, for a while.

Answering a unary call (authenticating it, reading the store, building the answer) is mostly
Python, which holds the GIL: with every worker thread answering at once they hand the GIL to
one another and each answer costs more CPU (bench/RESULTS.md, "Answering two calls at
once": 1,000 live queries at once took 28% less of the daemon's CPU per answer, and came 25%
faster, two at a time than eight). Two, not one, so one slow call does not hold up all the
others; and a call waits at most PATIENCE_S for its turn, then is answered anyway: slow
calls (a large sync page, a database busy with another process's write) cannot park every
worker thread behind them, and health checks and model downloads, which need a worker
too, still get one. A call whose caller gave up (its deadline passed, or it cancelled) while
it waited is ended there, unanswered. How many calls may be in progress or queued at all is
still the server's admission bound (security.max_concurrent_calls), past which a caller is
told Busy.

Streams (Artifacts.Download) are not counted: a stream holds its worker for as long as its
reader takes, and the artifact service bounds them with its own slots. Health checks are not
counted either. Must never refuse a call for what it asks: it only decides when its turn
comes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc

from gridpoint.node.daemon.interceptors import HEALTH_METHODS

__all__ = ["PATIENCE_S", "AnsweringLimit", "Turns"]

#: Seconds a call waits for a turn before it is answered without one.
PATIENCE_S = 0.5


class Turns:
    """At most `at_once` turns out at a time, handed to waiters first come, first served
    (a semaphore lets a thread that just gave a turn back take it again before those
    waiting)."""

    def __init__(self, at_once: int) -> None:
        self._free = at_once
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def take(self, timeout: float) -> bool:
        """Waits up to timeout seconds for a turn; False when none came (nothing taken)."""
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return True
            mine = threading.Event()
            self._waiting.append(mine)
        if mine.wait(max(0.0, timeout)):
            return True
        with self._lock:
            if mine.is_set():  # handed a turn as the wait ended
                return True
            self._waiting.remove(mine)
            return False

    def give_back(self) -> None:
        """Ends a turn: the first waiter gets it."""
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1


class AnsweringLimit(grpc.ServerInterceptor):
    """At most `at_once` unary calls answered at a time (health checks apart); a call waits
    at most `patience` seconds (and never past its deadline) for its turn."""

    def __init__(self, at_once: int, patience: float = PATIENCE_S) -> None:
        self._turns = Turns(at_once)
        self._patience = patience

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if (
            handler is None
            or handler.unary_unary is None
            or details.method.startswith(HEALTH_METHODS)
        ):
            return handler
        answer = handler.unary_unary

        def in_turn(request: Any, context: grpc.ServicerContext) -> Any:
            left = context.time_remaining()
            wait = self._patience if left is None else min(self._patience, left)
            turn = self._turns.take(wait)
            try:
                if not turn and left is not None and left <= self._patience:
                    context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED, "no turn came before the deadline"
                    )
                if not context.is_active():
                    context.abort(grpc.StatusCode.CANCELLED, "the caller left before its turn")
                return answer(request, context)
            finally:
                if turn:
                    self._turns.give_back()

        return grpc.unary_unary_rpc_method_handler(
            in_turn,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
