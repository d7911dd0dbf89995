"""Server interceptor that authenticates every request before a servicer sees it.

It checks the RequestAuth signature over the *raw* request bytes (the servicer's
deserializer runs only afterwards), that the caller is trusted, fresh and not replaying,
and that the signer is the node whose TLS certificate the connection presented. The
standard health service is exempt: it says nothing about the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gridpoint.errors import BadSignature, EnvelopeError, RequestError
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, ReplayGuard, verify_request
from gridpoint.node.protocol.rpc_errors import abort_with

__all__ = ["RequestAuthInterceptor"]

_EXEMPT_PREFIX = "/grpc.health.v1.Health/"


class RequestAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses unsigned, tampered, untrusted, stale or replayed requests."""

    def __init__(self, is_trusted: Callable[[str], bool], guard: ReplayGuard) -> None:
        self._is_trusted = is_trusted
        self._guard = guard

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(_EXEMPT_PREFIX) or handler.unary_unary is None:
            return handler
        auth = next(
            (v for k, v in details.invocation_metadata or () if k == AUTH_METADATA_KEY), None
        )
        deserialize = handler.request_deserializer
        serve = handler.unary_unary

        def authenticated(raw: bytes, context: grpc.ServicerContext) -> Any:
            if auth is None:
                abort_with(context, method, BadSignature("request is not signed"))
            try:
                caller = verify_request(
                    auth, method, raw, is_trusted=self._is_trusted, guard=self._guard
                )
            except EnvelopeError as exc:
                abort_with(context, method, exc)
            names = context.auth_context().get("x509_common_name", [])
            if names and names[0].decode() != caller:
                abort_with(context, method, BadSignature("request signer is not the TLS peer"))
            try:
                request = deserialize(raw)
            except DecodeError:
                abort_with(context, method, RequestError("request is not a valid message"))
            return serve(request, context)

        return grpc.unary_unary_rpc_method_handler(
            authenticated,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )
