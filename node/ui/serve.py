"""Runs the UI with uvicorn on a listen address; loopback unless a token guards it.

Must never serve a non-loopback address without a token, nor print the token anywhere but the
terminal that started the UI.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable

import uvicorn

from gridpoint.errors import ConfigError
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.tls import split_address
from gridpoint.node.store.sql_store import open_store
from gridpoint.node.ui.app import create_app
from gridpoint.node.ui.guard import is_loopback

__all__ = ["serve"]


def serve(
    home: NodeHome,
    db_url: str,
    listen: str,
    *,
    token: str | None,
    say: Callable[[str], None],
) -> None:
    """Serves until interrupted. A non-loopback listen gets a token (the one given, or a new
    one); the address to open, token included, is said once the socket is bound."""
    host, port = split_address(listen, allow_port_zero=True)
    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    if token is not None and len(token) < 16:
        raise ConfigError("--token must be at least 16 characters")
    store = open_store(db_url)
    try:
        app = create_app(home, store, db_url=db_url, token=token)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc
        # Listening before the address is said: a browser opened at once queues, not refused.
        sock.listen(128)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        say(f"gridpoint ui: serving {home.config.name!r} read-only at {url}")
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()
