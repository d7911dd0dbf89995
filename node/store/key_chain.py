"""The key chain: which node ids are one identity across key rotations, and which are revoked.

Node ids derive from keys, so a rotation gives an identity a new id; this is where the old
and new ids are tied together again, from the key events the store keeps. Pure: built from
KeyEvents, it reads no database and checks no signature.
"""

from __future__ import annotations

from collections.abc import Iterable

from gridpoint.node.store.control_base import KeyEvent

__all__ = ["KeyChain"]

# Far longer than any real chain: a bound on the walk, should a stored chain ever loop.
_MAX_STEPS = 10_000


class KeyChain:
    """Rotations (old id -> new id, at a signing time) and revocations, as this node knows them."""

    def __init__(self, events: Iterable[KeyEvent]) -> None:
        self._events = {e.node_id: e for e in events}
        self._predecessors: dict[str, list[str]] = {}
        for event in self._events.values():
            if event.successor_id is not None:
                self._predecessors.setdefault(event.successor_id, []).append(event.node_id)

    def event(self, node_id: str) -> KeyEvent | None:
        return self._events.get(node_id)

    def events(self) -> list[KeyEvent]:
        return list(self._events.values())

    def successor(self, node_id: str) -> str | None:
        event = self._events.get(node_id)
        return None if event is None else event.successor_id

    def rotated_at_ms(self, node_id: str) -> int | None:
        event = self._events.get(node_id)
        return None if event is None else event.rotated_at_ms

    def revoked(self, node_id: str) -> bool:
        event = self._events.get(node_id)
        return event is not None and event.revoked

    def later(self, node_id: str) -> list[str]:
        """The ids node_id rotated into, oldest first (not node_id itself)."""
        out: list[str] = []
        current = self.successor(node_id)
        while current is not None and current not in out and len(out) < _MAX_STEPS:
            out.append(current)
            current = self.successor(current)
        return out

    def head(self, node_id: str) -> str:
        """The newest id of node_id's identity."""
        later = self.later(node_id)
        return later[-1] if later else node_id

    def earlier(self, node_id: str) -> set[str]:
        """Every id that rotated, directly or not, into node_id (not node_id itself)."""
        out: set[str] = set()
        todo = [node_id]
        while todo and len(out) < _MAX_STEPS:
            for previous in self._predecessors.get(todo.pop(), []):
                if previous not in out and previous != node_id:
                    out.add(previous)
                    todo.append(previous)
        return out

    def identity(self, node_id: str) -> set[str]:
        """Every id of node_id's identity, earlier and later ones included."""
        head = self.head(node_id)
        return {head} | self.earlier(head)

    def speaks_for(self, signer_id: str, author_id: str) -> bool:
        """Whether signer_id is author_id or a later key of its chain."""
        return signer_id == author_id or signer_id in self.later(author_id)
