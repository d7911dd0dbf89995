"""ServerApp entry: gridpoint's verifying ServerApp."""

from federation.server_app import app

__all__ = ["app"]
