"""Who may talk to the UI, and what a page may load: checked on every request.

- No token (the UI listens on loopback): only requests addressed to a loopback host name
  (`localhost`, `127.0.0.1` or any 127.0.0.0/8 address, `[::1]`, each with or without a port)
  are answered. A web page whose DNS name was rebound to 127.0.0.1 sends its own name in
  `Host`, so it never reads a page (DNS rebinding).
- A token (any other listen address, or GRIDPOINT_UI_TOKEN): every request carries it, as
  `?token=` once (then kept in a cookie) or as `Authorization: Bearer`.
- Every answer says, in its Content-Security-Policy, that a page loads scripts, styles,
  pictures and data from this node only, and never runs inline script.

Why not Starlette's TrustedHostMiddleware: it splits `Host` at the first colon, so it cannot
accept `[::1]:8765`, and it compares names case-sensitively.

Must never answer a request for another host name when no token is set, nor compare the
token in a way whose time depends on how much of it matched.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

__all__ = ["TOKEN_COOKIE", "add_guard", "host_allowed", "is_loopback"]

TOKEN_COOKIE = "gridpoint_ui_token"
# plotly.js compiles WebGL programs (parallel coordinates) with Function(): 'unsafe-eval' is
# the price of drawing them; inline script stays forbidden, so injected markup never runs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^\[\]:]+)(?::\d{1,5})?")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (names are not resolved: only these)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(host_header: str | None) -> bool:
    """Whether a `Host` header names this machine's loopback (with or without a port)."""
    match = _HOST.fullmatch(host_header or "")
    return match is not None and is_loopback(match.group("name"))


def add_guard(app: FastAPI, token: str | None) -> None:
    """Adds the host or token check and the security headers to app."""

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token is None:
            if not host_allowed(request.headers.get("host")):
                return _secured(
                    PlainTextResponse(
                        "this UI answers only at a loopback address "
                        "(http://127.0.0.1:PORT/, http://localhost:PORT/ or http://[::1]:PORT/)",
                        421,
                    )
                )
        else:
            given = (
                request.query_params.get("token")
                or request.cookies.get(TOKEN_COOKIE)
                or request.headers.get("authorization", "").removeprefix("Bearer ")
            )
            if not secrets.compare_digest(given.encode(), token.encode()):
                return _secured(
                    PlainTextResponse(
                        "this UI needs its token: open the address `gridpoint ui` printed", 401
                    )
                )
        response = await call_next(request)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return _secured(response)


def _secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
