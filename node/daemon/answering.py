"""Server interceptor that lets only a few unary calls be answered at once; the rest wait.

Answering a unary call (authenticating it, reading the store, building the answer) is mostly
Python, which holds the GIL: with every worker thread answering at once they hand the GIL to
one another and each answer costs more CPU (bench/RESULTS.md, "Answering two calls at
once": 1,000 live queries at once took 28% less of the daemon's CPU per answer, and came 25%
faster, two at a time than eight). Two, not one, so one slow call (a large sync page, a slow
database) does not hold up all the others. A waiting call keeps its worker thread; how many
calls may be in progress or queued at all is still the server's admission bound
(security.max_concurrent_calls), past which a caller is told Busy.

Streams (Artifacts.Download) are not counted: a stream holds its worker for as long as its
reader takes, and the artifact service bounds them with its own slots. The health service
is not counted either: it must answer while the node is busy. Must never refuse or reorder
a call for what it asks: it only decides when a call's turn comes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc

__all__ = ["AnsweringLimit"]

_EXEMPT_PREFIX = "/grpc.health.v1.Health/"


class AnsweringLimit(grpc.ServerInterceptor):
    """At most `at_once` unary calls answered at a time (health checks apart)."""

    def __init__(self, at_once: int) -> None:
        self._turns = threading.BoundedSemaphore(at_once)

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if (
            handler is None
            or handler.unary_unary is None
            or details.method.startswith(_EXEMPT_PREFIX)
        ):
            return handler
        answer = handler.unary_unary

        def in_turn(request: Any, context: grpc.ServicerContext) -> Any:
            with self._turns:
                return answer(request, context)

        return grpc.unary_unary_rpc_method_handler(
            in_turn,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
