"""SecAgg+ rounds in-process: Flower's real workflow and client mods, gridpoint's signatures.

The host side is secure_round.py driving flwr's SecAggPlusWorkflow; each member is a
ClientApp with gridpoint's signing mod around Flower's secaggplus_mod, and a train handler
that answers a fixed update (the training itself is the e2e tests' concern). Messages go
through a loopback Grid that hands each one to its member's ClientApp, as a SuperLink would:
every stage, every key share and every masked vector takes the real path, in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from gridpoint.federation.flower_nodes import FlowerNode, member_id, remember, unrecorded
from gridpoint.federation.member_failures import FailureGrid
from gridpoint.federation.rounds import RoundLoop
from gridpoint.federation.secure_round import SecureSettings, SignedGrid, secure_train_round
from gridpoint.federation.server_app import _verify, verifying
from gridpoint.federation.update_signing import secure_parts
from gridpoint.node.home import NodeHome
from tests.federation.loopback import LoopbackGrid, member_app, member_context
from tests.helpers import MakeHome

FEDERATION = "fed-secure"
SETTINGS = SecureSettings(reconstruction_threshold=0.5, max_weight=1000.0, clipping_range=8.0)


def _update(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "encoder.weight": rng.normal(0, 0.5, (4, 3)).astype(np.float32),
        "head.bias": rng.normal(0, 0.5, (3,)).astype(np.float32),
    }


@pytest.fixture
def homes(make_home: MakeHome) -> list[NodeHome]:
    return [make_home(f"S{i}") for i in range(3)]


def _grid(homes: list[NodeHome], examples: list[int], **kw: object) -> LoopbackGrid:
    members = {}
    for i, (home, n) in enumerate(zip(homes, examples, strict=True)):
        members[100 + i] = (
            member_app(_update(i), n),
            member_context(home.path, 100 + i, FEDERATION),
        )
    return LoopbackGrid(members, **kw)  # type: ignore[arg-type]


def _round(
    loop: LoopbackGrid, trusted: list[NodeHome]
) -> tuple[ArrayRecord | None, list[tuple[str, dict[str, object], int]], SignedGrid]:
    keys = {h.identity.node_id: h.identity.public_key for h in trusted}
    signed = SignedGrid(
        FailureGrid(loop, unrecorded),  # type: ignore[arg-type]
        lambda reply, r: _verify(reply, FEDERATION, r, keys, secure_parts),
        server_round=3,
    )
    start = ArrayRecord({k: Array(np.zeros_like(v)) for k, v in _update(0).items()})
    average, members = secure_train_round(
        signed, sorted(loop.members), start, {"federation": FEDERATION}, SETTINGS
    )
    return average, members, signed


def _fedavg(updates: list[dict[str, np.ndarray]], weights: list[int]) -> dict[str, np.ndarray]:
    total = float(sum(weights))
    return {
        k: np.sum([u[k] * w for u, w in zip(updates, weights, strict=True)], axis=0) / total
        for k in updates[0]
    }


def test_the_secure_average_is_fedavgs_and_no_member_update_reaches_the_host(
    homes: list[NodeHome],
) -> None:
    examples = [40, 100, 250]
    loop = _grid(homes, examples)
    average, members, signed = _round(loop, homes)
    assert average is not None
    expected = _fedavg([_update(i) for i in range(3)], examples)
    for key, value in expected.items():
        # Quantization: 2**22 levels over +-8, scaled by each member's share of max_weight.
        np.testing.assert_allclose(average[key].numpy(), value, atol=1e-3)
    assert sorted(s for s, _, _ in members) == sorted(h.identity.node_id for h in homes)
    assert signed.refused == []
    # What reached the host: no array bytes, and nowhere a member's update in clear.
    assert signed.array_bytes_received == 0
    for reply in loop.seen:
        carried = b"".join(
            v if isinstance(v, bytes) else b"".join(x for x in v if isinstance(x, bytes))
            for record in reply.content.config_records.values()
            for v in record.values()
            if isinstance(v, bytes | list)
        )
        for i in range(3):
            for vector in _update(i).values():
                assert vector.tobytes() not in carried


def test_a_member_gone_after_sharing_its_keys_is_unmasked_from_the_others_shares(
    homes: list[NodeHome],
) -> None:
    # Member 101 shares its keys, then never sends its masked update (mid-round).
    examples = [40, 100, 250]
    loop = _grid(
        homes,
        examples,
        gone=lambda nid, stage: nid == 101 and stage != "setup" and stage != "share_keys",
    )
    average, members, _ = _round(loop, homes)
    assert average is not None
    expected = _fedavg([_update(0), _update(2)], [40, 250])
    for key, value in expected.items():
        np.testing.assert_allclose(average[key].numpy(), value, atol=1e-3)
    assert sorted(s for s, _, _ in members) == sorted(
        h.identity.node_id for h in (homes[0], homes[2])
    )


def test_a_member_whose_supernode_dies_mid_round_is_refused_by_its_gridpoint_node_id(
    homes: list[NodeHome], tmp_path: Path
) -> None:
    # Prepare: the host recorded each member's Flower node id as it registered the member;
    # member 101 shares its keys, then its SuperNode dies and the SuperLink answers for it.
    for i, home in enumerate(homes):
        remember(tmp_path, 100 + i, FlowerNode(f"S{i}", home.identity.node_id))
    examples = [40, 100, 250]
    loop = _grid(
        homes,
        examples,
        gone=lambda nid, stage: nid == 101 and stage not in ("setup", "share_keys"),
        answer_for_gone=True,
    )
    keys = {h.identity.node_id: h.identity.public_key for h in homes}
    strategy = verifying(FedAvg, FEDERATION, keys)()
    rounds = RoundLoop(
        strategy,
        loop,  # type: ignore[arg-type]
        min_members=3,
        round_timeout=5.0,
        train_config=ConfigRecord({"federation": FEDERATION}),
        on_round=lambda r, arrays, event: None,
        secure=SETTINGS,
        check_secure=lambda reply, r: _verify(reply, FEDERATION, r, keys, secure_parts),
        member_of=lambda flower_id: member_id(tmp_path, flower_id),
    )
    start = ArrayRecord({k: Array(np.zeros_like(v)) for k, v in _update(0).items()})
    # Execute
    average, _, report = rounds._secure_train(3, start)
    # Assert: the others were summed; the dead member is refused by name, with Flower's reason.
    assert average is not None
    expected = _fedavg([_update(0), _update(2)], [40, 250])
    for key, value in expected.items():
        np.testing.assert_allclose(average[key].numpy(), value, atol=1e-3)
    assert sorted(report["accepted"]) == sorted(h.identity.node_id for h in (homes[0], homes[2]))
    [refused] = report["refused"]
    assert refused["node"] == homes[1].identity.node_id
    assert refused["reason"].startswith("member failed: Error: Node Unavailable")


def test_a_member_whose_replies_are_not_signed_by_a_trusted_key_is_left_out_by_name(
    homes: list[NodeHome],
) -> None:
    # Homes[2] is no trusted peer of this host: every one of its replies is refused.
    examples = [40, 100, 250]
    loop = _grid(homes, examples)
    average, members, signed = _round(loop, homes[:2])
    assert average is not None
    expected = _fedavg([_update(0), _update(1)], [40, 100])
    for key, value in expected.items():
        np.testing.assert_allclose(average[key].numpy(), value, atol=1e-3)
    assert [r["node"] for r in signed.refused] == [homes[2].identity.node_id]
    assert "not a trusted peer" in signed.refused[0]["reason"]
    assert sorted(s for s, _, _ in members) == sorted(h.identity.node_id for h in homes[:2])


def test_below_the_reconstruction_threshold_the_round_fails_and_nothing_is_summed(
    homes: list[NodeHome],
) -> None:
    loop = _grid(homes, [40, 100, 250], gone=lambda nid, stage: nid != 100 and stage == "unmask")
    average, members, _ = _round(loop, homes)
    assert average is None
    assert members == []
