"""ServerApp entry: gridpoint's verifying ServerApp."""

from gridpoint.federation.server_app import app

__all__ = ["app"]
