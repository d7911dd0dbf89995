"""Which Flower node id each trusted peer's SuperNode was registered under, as the host recorded it.

`fed host` registers every trusted peer's SuperNode key with its SuperLink, which answers with
the Flower node id that SuperNode will have; the host writes it down here (flower-nodes.json
in the run's folder), with the peer's gridpoint node id and display name. The host reads it
to say who is online; the ServerApp to name the member a SuperLink error reply stands for
(member_failures.py), since Flower's messages know members only by Flower node id.

A record written before the gridpoint node id was kept ({flower id: name}, a resumed run
from then) still reads: its entries have the name only. This record names members for
people and journals; it must never decide trust (the signatures on updates do that).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["FLOWER_NODES", "FlowerNode", "member_id", "recorded", "remember", "unrecorded"]

#: The record, in the run's folder: {flower node id: {"node_id": ..., "name": ...}}.
FLOWER_NODES = "flower-nodes.json"


@dataclass(frozen=True)
class FlowerNode:
    """The trusted peer behind one Flower node id."""

    #: What people call the peer (its name, or the start of its node id).
    name: str
    #: The peer's gridpoint node id; None in a record from before it was kept.
    node_id: str | None = None


def remember(folder: Path, flower_id: int, node: FlowerNode) -> None:
    """Adds (or replaces) flower_id's entry; written whole, as the ServerApp reads it meanwhile."""
    known = recorded(folder)
    known[flower_id] = node
    partial = folder / (FLOWER_NODES + ".partial")
    partial.write_text(json.dumps({str(k): asdict(v) for k, v in known.items()}))
    partial.replace(folder / FLOWER_NODES)


def recorded(folder: Path) -> dict[int, FlowerNode]:
    """Every recorded Flower node id's peer ({} before any peer was registered)."""
    path = folder / FLOWER_NODES
    if not path.exists():
        return {}
    return {
        int(flower_id): FlowerNode(entry)
        if isinstance(entry, str)  # the old shape: the name alone
        else FlowerNode(str(entry["name"]), entry.get("node_id"))
        for flower_id, entry in json.loads(path.read_text()).items()
    }


def unrecorded(flower_id: int) -> str:
    """How a member is named whose gridpoint node id the record does not know."""
    return f"flower-node-{flower_id}"


def member_id(folder: Path, flower_id: int) -> str:
    """The gridpoint node id behind flower_id, or unrecorded(flower_id) if not recorded."""
    node = recorded(folder).get(flower_id)
    return node.node_id if node is not None and node.node_id else unrecorded(flower_id)
