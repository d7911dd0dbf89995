"""The gRPC error boundary, both ways.

Server side: one table maps each GridpointError class to a status code; rpc_boundary() logs
the detail and aborts with the error's own message, which is written to be safe for peers.
Anything unexpected becomes INTERNAL with a generic message: exception text never leaves.
Client side: status_to_error() turns a grpc.RpcError back into a domain exception, keeping
at most MAX_DETAILS_CHARS of what the peer said, with its control characters removed (the
peer chooses that text). RESOURCE_EXHAUSTED, UNAVAILABLE and a peer's CANCELLED mean Busy
(ask again shortly) unless it is gRPC's own "message larger than max", which a correct peer
never causes. Refusals are logged
rate-limited per method and status: a caller can repeat a bad request as often as it likes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import grpc

from gridpoint.errors import (
    ArtifactNotFound,
    Busy,
    ClockOutOfWindow,
    EnvelopeError,
    GridpointError,
    NotShared,
    PeerError,
    PeerMisbehaved,
    PeerRefused,
    PeerUnavailable,
    RecordError,
    Replayed,
    RequestError,
    UnknownSigner,
)
from gridpoint.node.logs import log_limited
from gridpoint.node.protocol.peer_text import printable

__all__ = [
    "MAX_DETAILS_CHARS",
    "abort_with",
    "error_for_status",
    "rpc_boundary",
    "status_for",
    "status_to_error",
]

#: How much of a peer's status details an error keeps: the peer chooses that text.
MAX_DETAILS_CHARS = 300
# How gRPC itself says a message was over a side's limit ("Received message larger than max
# (N vs. M)", "Sent message larger than max ..."); RESOURCE_EXHAUSTED without it is Busy.
_TOO_LARGE = "larger than max"

_STATUS: list[tuple[type[GridpointError], grpc.StatusCode]] = [
    (Busy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnknownSigner, grpc.StatusCode.PERMISSION_DENIED),
    (NotShared, grpc.StatusCode.PERMISSION_DENIED),
    (ArtifactNotFound, grpc.StatusCode.NOT_FOUND),
    (Replayed, grpc.StatusCode.UNAUTHENTICATED),
    (ClockOutOfWindow, grpc.StatusCode.UNAUTHENTICATED),
    (EnvelopeError, grpc.StatusCode.UNAUTHENTICATED),
    (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (RecordError, grpc.StatusCode.INVALID_ARGUMENT),
]


def status_for(exc: GridpointError) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.FAILED_PRECONDITION


def abort_with(context: grpc.ServicerContext, method: str, exc: GridpointError) -> NoReturn:
    code = status_for(exc)
    log_limited(
        f"refused {method} {code.name}",
        "request refused",
        logging.WARNING,
        method=method,
        status=code.name,
        reason=str(exc),
    )
    context.abort(code, str(exc))
    raise AssertionError("context.abort returns only by raising")


@contextmanager
def rpc_boundary(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Turns exceptions raised by a servicer into a gRPC status and a log line."""
    try:
        yield
    except GridpointError as exc:
        abort_with(context, method, exc)
    except Exception as exc:
        log_limited(
            f"failed {method}",
            "request failed",
            logging.ERROR,
            method=method,
            error=exc.__class__.__name__,
        )
        context.abort(grpc.StatusCode.INTERNAL, "internal error in the peer node")


def status_to_error(err: grpc.RpcError, peer: str) -> GridpointError:
    """The domain exception for a failed gRPC call to peer."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else ""
    return error_for_status(code, details or "", peer)


def error_for_status(code: grpc.StatusCode, details: str, peer: str) -> GridpointError:
    """The domain exception a caller sees for a status answered by peer."""
    details = printable(details)
    if len(details) > MAX_DETAILS_CHARS:
        details = f"{details[:MAX_DETAILS_CHARS]}..."
    if code == grpc.StatusCode.UNAVAILABLE:
        return Busy(f"peer {peer} did not answer (unavailable)")
    if code == grpc.StatusCode.CANCELLED:
        # Our own cancels never get here; the peer's end a stream it bounds (resume it).
        return Busy(f"peer {peer} ended the call (cancelled)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerUnavailable(f"peer {peer} did not answer (deadline_exceeded)")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return RequestError(f"peer {peer} refused the request: {details}")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return PeerRefused(f"peer {peer} refused us ({code.name.lower()}): {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return ArtifactNotFound(f"peer {peer} does not hold it: {details}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE in details:
        return PeerMisbehaved(f"peer {peer}: a message was over the size limit ({details})")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return Busy(f"peer {peer} is busy: {details}")
    return PeerError(f"peer {peer} failed ({code.name.lower()}): {details}")
