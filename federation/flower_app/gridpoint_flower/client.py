"""ClientApp entry: gridpoint's signing ClientApp."""

from federation.client_app import app

__all__ = ["app"]
