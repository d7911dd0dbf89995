"""Server interceptor that authenticates every request before a servicer sees it.

It checks the RequestAuth signature over the *raw* request bytes (the servicer's
deserializer runs only afterwards), that the caller is trusted, fresh and not replaying,
and that the signer is the node whose TLS certificate the connection presented — exactly the
certificate pinned for it, not one a pinned certificate signed. The standard health service
is exempt: it says nothing about the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gridpoint.errors import BadSignature, EnvelopeError, RequestError
from gridpoint.node.daemon.service import RequestAuthenticator
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY
from gridpoint.node.protocol.rpc_errors import abort_with

__all__ = ["AUTHENTICATED_CALLER", "HEALTH_METHODS", "RequestAuthInterceptor"]

#: The standard health service's methods: never authenticated, never kept waiting.
HEALTH_METHODS = "/grpc.health.v1.Health/"

#: The node id a unary call was authenticated as, set while its servicer runs (a streaming
#: call's servicer runs after, and reads its TLS peer). Servicers take the caller from here
#: rather than ask gRPC for the connection's details a second time: under 1,000 live
#: queries at once, each asking cost the daemon 3% of its GIL time (bench/RESULTS.md).
AUTHENTICATED_CALLER: ContextVar[str] = ContextVar("authenticated_caller")


class RequestAuthInterceptor(grpc.ServerInterceptor):
    """Refuses unsigned, tampered, untrusted, stale or replayed requests."""

    def __init__(self, authenticate: RequestAuthenticator) -> None:
        self._authenticate = authenticate

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(HEALTH_METHODS):
            return handler
        # Unary calls and server-streaming ones (Artifacts.Download) take one signed request;
        # a method taking a stream of requests could not be checked, so none is served.
        serve = handler.unary_unary or handler.unary_stream
        if serve is None or handler.request_streaming:
            return None
        sent = next(
            (v for k, v in details.invocation_metadata or () if k == AUTH_METADATA_KEY), None
        )
        # A "-bin" metadata key always arrives as bytes; anything else is no signature.
        auth = sent if isinstance(sent, bytes) else None
        deserialize = handler.request_deserializer

        def authenticated(raw: bytes, context: grpc.ServicerContext) -> Any:
            peer = context.auth_context()
            names = [bytes(n) for n in peer.get("x509_common_name", [])]
            certs = [bytes(c) for c in peer.get("x509_pem_cert", [])]
            try:
                if not certs:
                    raise BadSignature("the caller presented no TLS certificate")
                caller = self._authenticate(
                    method, raw, auth, names[0].decode() if names else None, certs[0]
                )
            except EnvelopeError as exc:
                abort_with(context, method, exc)
            if deserialize is None:  # a handler of raw bytes decodes them itself
                request = raw
            else:
                try:
                    request = deserialize(raw)
                except DecodeError:
                    abort_with(context, method, RequestError("request is not a valid message"))
            token = AUTHENTICATED_CALLER.set(caller)
            try:
                return serve(request, context)
            finally:
                AUTHENTICATED_CALLER.reset(token)

        wrap = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream is not None
            else grpc.unary_unary_rpc_method_handler
        )
        return wrap(
            authenticated,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )
