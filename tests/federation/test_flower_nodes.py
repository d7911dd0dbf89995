"""The host's record of which Flower node id each trusted peer's SuperNode has, old shape included."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from gridpoint.federation.flower_nodes import (
    FLOWER_NODES,
    FlowerNode,
    member_id,
    recorded,
    remember,
)
from gridpoint.federation.host import _remember_flower_node


def test_the_record_gives_each_flower_node_its_members_node_id_and_name(tmp_path: Path) -> None:
    # Execute: two peers registered, one of them registered again under a new name.
    remember(tmp_path, 1234, FlowerNode("alice", "a" * 64))
    remember(tmp_path, 99, FlowerNode("b-old", "b" * 64))
    remember(tmp_path, 99, FlowerNode("bob", "b" * 64))
    # Assert
    assert recorded(tmp_path) == {
        1234: FlowerNode("alice", "a" * 64),
        99: FlowerNode("bob", "b" * 64),
    }
    assert member_id(tmp_path, 1234) == "a" * 64
    assert member_id(tmp_path, 7) == "flower-node-7"
    assert not (tmp_path / (FLOWER_NODES + ".partial")).exists()


def test_nothing_recorded_yet_names_every_flower_node_by_its_flower_id(tmp_path: Path) -> None:
    assert recorded(tmp_path) == {}
    assert member_id(tmp_path, 5) == "flower-node-5"


def test_a_record_in_the_old_shape_gives_the_name_alone_and_takes_new_entries(
    tmp_path: Path,
) -> None:
    # Prepare: a run from before the node id was kept wrote {flower id: name}.
    (tmp_path / FLOWER_NODES).write_text(json.dumps({"1234": "alice"}))
    # Execute: the resumed run registers a peer trusted since.
    remember(tmp_path, 99, FlowerNode("bob", "b" * 64))
    # Assert: alice keeps her name; her node id is unknown, so she is named by Flower's id.
    assert recorded(tmp_path) == {1234: FlowerNode("alice"), 99: FlowerNode("bob", "b" * 64)}
    assert member_id(tmp_path, 1234) == "flower-node-1234"
    assert member_id(tmp_path, 99) == "b" * 64


def test_the_host_records_the_node_id_flwr_supernode_register_answered(tmp_path: Path) -> None:
    # What `flwr supernode register ... --format json` prints (its node id is a number).
    out = '{\n  "success": true,\n  "node-id": 8734597\n}\n'
    peer = SimpleNamespace(name="", node_id="c" * 64)
    _remember_flower_node(tmp_path, out, peer)
    _remember_flower_node(tmp_path, "SuperNode couldn't be registered.", peer)
    assert recorded(tmp_path) == {8734597: FlowerNode("c" * 12, "c" * 64)}
