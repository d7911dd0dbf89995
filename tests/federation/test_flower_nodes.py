"""The host's record of which Flower node id each trusted peer's SuperNode has, old shape included,
and the registration that makes it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gridpoint.errors import GridpointError
from gridpoint.federation import host
from gridpoint.federation.flower_nodes import (
    FLOWER_NODES,
    FlowerNode,
    member_id,
    recorded,
    remember,
)
from gridpoint.federation.host import _remember_flower_node
from gridpoint.node.protocol.tls import make_tls_material


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


def test_members_are_registered_side_by_side_and_one_refused_is_asked_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: four trusted peers; Flower's CLI (`flwr supernode register`, through the seam
    # the host calls it by) takes a moment for each and refuses the third, once.
    cert = make_tls_material("0" * 64, "peer").cert_pem
    peers = [SimpleNamespace(name=f"Org{i}", node_id=f"{i}" * 64, cert_pem=cert) for i in range(4)]
    running, most, refused = [0], [0], [0]
    lock = threading.Lock()

    def flwr(args: list[str], env: dict[str, str], folder: Path) -> str:
        peer = Path(args[2]).name.removeprefix("member-")[0]
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
            if peer == "2" and not refused[0]:
                refused[0] = 1
                raise GridpointError("flwr supernode register failed: refused")
        return json.dumps({"success": True, "node-id": 100 + int(peer)})

    monkeypatch.setattr(host, "_flwr", flwr)
    trust = host._LiveTrust(tmp_path, {}, resumed=False, peers=[])
    # Execute
    with pytest.raises(GridpointError, match="refused"):
        trust.add(peers)
    listed_after_refusal = json.loads((tmp_path / host.TRUSTED).read_text())
    again = trust.add(peers)
    # Assert: all four asked at once; the three registered were listed for the ServerApp
    # (named by their Flower ids) despite the refusal; the next add asked for the refused
    # one alone.
    assert most[0] == 4
    assert sorted(listed_after_refusal) == ["0" * 64, "1" * 64, "3" * 64]
    assert again == [peers[2]]
    assert sorted(json.loads((tmp_path / host.TRUSTED).read_text())) == [
        f"{i}" * 64 for i in range(4)
    ]
    assert {k: v.name for k, v in recorded(tmp_path).items()} == {
        100 + i: f"Org{i}" for i in range(4)
    }
