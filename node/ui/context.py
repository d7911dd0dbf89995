"""What every page of the UI works with: the node's home and open store, the templates, the
studies' storage, the held models (read-only), and how a page answers (HTML, errors too).

Must never open anything for writing: the store is the caller's, models are read through a
read-only artifact store, studies through a read-only connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from gridpoint.node.artifacts.store import Artifact, ArtifactStore
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.ui.importance import ImportanceCache
from gridpoint.node.ui.views import SignerNames

__all__ = ["PLOTLY_PATH", "UiContext"]

#: Where the page asks for plotly.js (versioned: the browser may keep it for good).
PLOTLY_PATH = f"/assets/plotly-{metadata.version('plotly')}.min.js"


@dataclass
class UiContext:
    """The node a UI serves, and what its pages share."""

    home: NodeHome
    store: CatalogStore
    templates: Jinja2Templates
    optuna_url: str | None
    importances: ImportanceCache

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page rendered from its template."""
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        """An error as a page of its own, with its status."""
        return self.page(request, "error.html", status, message=message)

    def names(self) -> SignerNames:
        """Organization names by node id (read once per page)."""
        return SignerNames(self.home, self.store)

    def models(self) -> list[Artifact]:
        """Every model this node holds, newest first (none when the store holds no models)."""
        return ArtifactStore(self.home, self.store, read_only=True).list()

    def model(self, id_or_prefix: str) -> Artifact:
        """One held model; ArtifactNotFound / ArtifactError say what is wrong."""
        return ArtifactStore(self.home, self.store, read_only=True).get(id_or_prefix)
