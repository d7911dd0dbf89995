"""A model's lineage as a graph, read from the store: the records it descends from (trials,
federations, the records those name as parents), the models kept from each, and what was
derived from it (records that name its record as parent, and their models), in columns from
the oldest ancestor to the newest descendant; and that graph as a plotly.js figure where
each node opens its page.

Columns: a record at generation g sits in column 2g, a model kept from it in column 2g+1, so
the graph reads records -> trials -> models -> federations -> derived models left to right.

Must never follow more than MAX_NODES nodes nor read a record twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from gridpoint.node.artifacts.store import Artifact
from gridpoint.node.record_views import SignerNames
from gridpoint.node.store.base import CatalogStore, StoredRecord
from gridpoint.node.store.models import PARENTS, RECORDS
from gridpoint.node.store.sql_store import SqlStore
from gridpoint.node.ui.figures import Chart, color_of, esc

__all__ = ["LineageGraph", "LineageNode", "lineage_chart", "model_lineage"]

#: Most nodes in one graph (records and models together).
MAX_NODES = 200
#: Most children read for one record.
MAX_CHILDREN = 50


@dataclass(frozen=True)
class LineageNode:
    """A record or a model in the graph; link opens its page ('' for a record not held)."""

    key: str
    kind: str  # "record" | "model"
    label: str
    link: str
    generation: int
    current: bool = False

    @property
    def column(self) -> int:
        return 2 * self.generation + (1 if self.kind == "model" else 0)


@dataclass
class LineageGraph:
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)


def _children(store: CatalogStore, record_id: str) -> list[str]:
    if not isinstance(store, SqlStore):
        return []
    with store.reading() as conn:
        return list(
            conn.scalars(
                select(RECORDS.c.id)
                .join(PARENTS, PARENTS.c.record_seq == RECORDS.c.seq)
                .where(PARENTS.c.parent_id == record_id)
                .order_by(RECORDS.c.seq)
                .limit(MAX_CHILDREN)
            )
        )


def model_lineage(
    store: CatalogStore,
    names: SignerNames,
    models_of: Callable[[str], list[Artifact]],
    model: Artifact,
) -> LineageGraph:
    """The graph around model: ancestors of its record, descendants, the models held for
    each record (models_of)."""
    graph = LineageGraph()

    def add_record(record_id: str, generation: int) -> StoredRecord | None:
        stored = store.get_record(record_id)
        if stored is None:
            label = f"record {esc(record_id[:12])}<br>(not in this catalog)"
            link = ""
        else:
            kind, signer = esc(stored.record.kind), esc(names.name(stored.signer_id))
            label = f"{kind} record {record_id[:12]}<br>{signer}"
            link = f"/record/{record_id}"
        graph.nodes[record_id] = LineageNode(record_id, "record", label, link, generation)
        for m in models_of(record_id):
            graph.nodes[m.id] = LineageNode(
                m.id,
                "model",
                f"{esc(m.kind)} model {m.id[:12]}<br>{esc(m.method)}",
                f"/model/{m.id}",
                generation,
                current=m.id == model.id,
            )
            graph.edges.append((record_id, m.id))
        return stored

    if model.record_id is None:
        graph.nodes[model.id] = LineageNode(
            model.id, "model", f"model {model.id[:12]}", f"/model/{model.id}", 0, current=True
        )
        return graph
    # Ancestors (generation going down), then descendants (going up), breadth first.
    queue: deque[tuple[str, int, int]] = deque([(model.record_id, 0, 0)])
    while queue and len(graph.nodes) < MAX_NODES:
        record_id, generation, direction = queue.popleft()
        if record_id in graph.nodes:
            continue
        stored = add_record(record_id, generation)
        if direction <= 0 and stored is not None:
            for parent in stored.record.parents:
                graph.edges.append((parent, record_id))
                queue.append((parent, generation - 1, -1))
        if direction >= 0:
            for child in _children(store, record_id):
                graph.edges.append((record_id, child))
                queue.append((child, generation + 1, 1))
    low = min(n.generation for n in graph.nodes.values())
    graph.nodes = {
        k: LineageNode(n.key, n.kind, n.label, n.link, n.generation - low, n.current)
        for k, n in graph.nodes.items()
    }
    graph.edges = [
        (a, b) for a, b in dict.fromkeys(graph.edges) if a in graph.nodes and b in graph.nodes
    ]
    return graph


def lineage_chart(graph: LineageGraph) -> Chart:
    """The graph drawn left to right; an edge from a record with a model leaves its model."""
    columns: dict[int, list[LineageNode]] = {}
    for node in graph.nodes.values():
        columns.setdefault(node.column, []).append(node)
    where: dict[str, tuple[float, float]] = {}
    for column, nodes in columns.items():
        for row, node in enumerate(nodes):
            where[node.key] = (float(column), -(row - (len(nodes) - 1) / 2))
    model_of = {a: b for a, b in graph.edges if graph.nodes[b].kind == "model"}
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for parent, b in graph.edges:
        # Work derived from a record whose model is kept starts from that model.
        derived = graph.nodes[parent].kind == "record" and graph.nodes[b].kind == "record"
        a = model_of.get(parent, parent) if derived else parent
        (ax, ay), (bx, by) = where[a], where[b]
        edge_x += [ax, bx, None]
        edge_y += [ay, by, None]
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": edge_x,
            "y": edge_y,
            "line": {"color": "#9aa5b8", "width": 1.5},
            "hoverinfo": "skip",
            "showlegend": False,
        }
    ]
    for index, kind in enumerate(("record", "model")):
        nodes = [n for n in graph.nodes.values() if n.kind == kind]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "name": f"{kind}s",
                "x": [where[n.key][0] for n in nodes],
                "y": [where[n.key][1] for n in nodes],
                "text": [n.label for n in nodes],
                "textposition": "bottom center",
                "customdata": [n.link for n in nodes],
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {
                    "symbol": "circle" if kind == "record" else "square",
                    "size": [22 if n.current else 14 for n in nodes],
                    "color": color_of(index),
                    "line": {"width": [3 if n.current else 1 for n in nodes], "color": "#1d2330"},
                },
            }
        )
    height = 160 + 90 * max((len(n) for n in columns.values()), default=1)
    return Chart(
        "lineage",
        {
            "data": traces,
            "layout": {
                "title": {"text": "Lineage (click a node to open it)", "font": {"size": 15}},
                "xaxis": {"visible": False, "range": [-0.7, max(columns, default=0) + 0.7]},
                "yaxis": {"visible": False},
                "hovermode": "closest",
                "height": height,
                "margin": {"l": 20, "r": 20, "t": 50, "b": 20},
                "legend": {"orientation": "h"},
            },
        },
    )
