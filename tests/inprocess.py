"""Nodes that talk through the in-process transport: real services and stores, no sockets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gridpoint.errors import PeerUnavailable
from gridpoint.node.artifacts.store import ArtifactStore
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.inprocess import Handler, InProcessTransport, StreamHandler
from gridpoint.node.peers.transport import IDLE_TIMEOUT_S, Connector, PeerTransport
from gridpoint.node.store.base import Peer
from gridpoint.node.store.sql_store import SqlStore, open_store


@dataclass
class Node:
    """One node of the network: its home, its open store, the service peers call."""

    home: NodeHome
    store: SqlStore
    service: NodeService

    @property
    def node_id(self) -> str:
        return self.home.identity.node_id

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.home, self.store)


@dataclass
class Network:
    """In-process nodes by node id; a node that is `down` answers nothing, and one in
    `crafted` (`crafted_streams`) answers with that handler instead of its service (a
    misbehaving peer). Transports wait idle_timeout_s for a stream's next message."""

    root: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    crafted: dict[str, Handler] = field(default_factory=dict)
    crafted_streams: dict[str, StreamHandler] = field(default_factory=dict)
    idle_timeout_s: float = IDLE_TIMEOUT_S

    def add(self, name: str, *, page_size: int | None = None) -> Node:
        home = NodeHome(self.root / name)
        home.init(name)
        if page_size is not None:
            text = home.config_path.read_text()
            home.config_path.write_text(text.replace("page_size = 500", f"page_size = {page_size}"))
            home = NodeHome(self.root / name)
        store = open_store(home.db_url())
        node = Node(home, store, NodeService(home, store))
        self.nodes[node.node_id] = node
        return node

    def pair(self, a_name: str, b_name: str) -> tuple[Node, Node]:
        """Two new nodes that trust each other."""
        a, b = self.add(a_name), self.add(b_name)
        self.trust(a, b)
        self.trust(b, a)
        return a, b

    def trust(self, a: Node, b: Node) -> None:
        """a trusts b (as `peer add` would pin it)."""
        a.store.add_peer(
            Peer(
                node_id=b.node_id,
                address=f"inprocess:{b.home.config.name}",
                name=b.home.config.name,
                fingerprint=b.home.tls_fingerprint,
                cert_pem=b.home.tls.cert_pem,
                added_at=datetime.now(UTC),
            )
        )

    def connector(self, caller: Node) -> Connector:
        """Opens in-process transports from caller to its stored peers."""

        @contextmanager
        def connect(peer: Peer) -> Iterator[PeerTransport]:
            if peer.node_id in self.down:
                raise PeerUnavailable(f"peer {peer.address} did not answer (unavailable)")
            service = self.nodes[peer.node_id].service
            with InProcessTransport(
                caller.home.identity,
                peer.address,
                peer.node_id,
                self.crafted.get(peer.node_id) or service.handle,
                self.crafted_streams.get(peer.node_id) or service.handle_stream,
                idle_timeout_s=self.idle_timeout_s,
            ) as transport:
                yield transport

        return connect

    def close(self) -> None:
        for node in self.nodes.values():
            node.service.close()
            node.store.close()
