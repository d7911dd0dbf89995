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
from sqlalchemy import select

from gridpoint.node.artifacts.store import Artifact, ArtifactStore
from gridpoint.node.home import NodeHome
from gridpoint.node.record_views import SignerNames
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.models import ARTIFACTS
from gridpoint.node.store.sql_store import SqlStore
from gridpoint.node.ui.importance import ImportanceCache

__all__ = ["PLOTLY_PATH", "UiContext"]

#: Where the page asks for plotly.js (versioned: the browser may keep it for good).
PLOTLY_PATH = f"/assets/plotly-{metadata.version('plotly')}.min.js"
#: Most models shown for one record.
MAX_MODELS_PER_RECORD = 20


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

    def models(self, group: str | None = None) -> list[Artifact]:
        """Every model this node holds (or those of one study or federation), newest first."""
        return ArtifactStore(self.home, self.store, read_only=True).list(group)

    def models_of(self, record_id: str) -> list[Artifact]:
        """The models kept from one record (a trial's, a federation's): an indexed lookup."""
        if not isinstance(self.store, SqlStore):
            return []
        with self.store.reading() as conn:
            ids = conn.scalars(
                select(ARTIFACTS.c.id)
                .where(ARTIFACTS.c.record_id == record_id)
                .order_by(ARTIFACTS.c.created_at)
                .limit(MAX_MODELS_PER_RECORD)
            ).all()
        store = ArtifactStore(self.home, self.store, read_only=True)
        return [store.get(i) for i in ids]

    def model(self, id_or_prefix: str) -> Artifact:
        """One held model; ArtifactNotFound / ArtifactError say what is wrong."""
        return ArtifactStore(self.home, self.store, read_only=True).get(id_or_prefix)
