"""ClientApp entry: gridpoint's signing ClientApp."""

from gridpoint.federation.client_app import app

__all__ = ["app"]
