"""In-process nodes for the owner's-control tests: a store per node on the backend under test,
sync and live query through the in-process transport, rotation followed by a fresh service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gridpoint.node.catalog import publish
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.live_query import QueryResult, run_query
from gridpoint.node.peers.sync import SyncReport, sync_all
from gridpoint.node.store.sql_store import open_store
from gridpoint.schema import RunRecord
from tests.helpers import make_record
from tests.inprocess import Network, Node


class World(Network):
    """Network whose nodes keep their stores at URLs new_url gives."""

    def __init__(self, root: Path, new_url: Callable[[str], str]) -> None:
        super().__init__(root)
        self._new_url = new_url

    def node(self, name: str, config: str = "") -> Node:
        home = NodeHome(self.root / name)
        home.init(name)
        if config:
            home.config_path.write_text(home.config_path.read_text() + config)
            home = NodeHome(home.path)
        store = open_store(self._new_url(name))
        node = Node(home, store, NodeService(home, store))
        self.nodes[node.node_id] = node
        return node

    def mutual(self, a: Node, b: Node) -> None:
        self.trust(a, b)
        self.trust(b, a)

    def sync(self, a: Node, b: Node) -> SyncReport:
        """a pulls from b (under whichever id a trusts it: b may have rotated its key)."""
        [entry] = [p for p in a.store.list_peers() if self.nodes.get(p.node_id) is b]
        [report] = sync_all(a.home, a.store, self.connector(a), only=entry.node_id)
        assert report.error is None, report.error
        return report

    def query(self, a: Node, filter_text: str = "", order_by: str = "") -> QueryResult:
        return run_query(
            a.home, a.store, filter_text, limit=100, order_by=order_by, connect=self.connector(a)
        )

    def publish(self, a: Node, i: int = 0, record: RunRecord | None = None) -> str:
        return publish(a.store, a.home.identity, record or make_record(i)).id

    def reload(self, a: Node) -> Node:
        """The node with its home read again (after its key rotated)."""
        home = NodeHome(a.home.path)
        fresh = Node(home, a.store, NodeService(home, a.store))
        # Peers that have not re-keyed yet still reach it under its old id (as TLS SNI does).
        self.nodes[fresh.node_id] = self.nodes[a.node_id] = fresh
        return fresh

    def ids(self, a: Node) -> set[str]:
        return {r.id for r in a.store.query(None, limit=10_000)}
