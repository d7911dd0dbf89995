"""A plain round's checks in-process: the verifying strategy leaves out what is not signed right.

Each member is a ClientApp with gridpoint's real signing mod; its reply goes to the ServerApp's
verifying FedAvg as Flower would deliver it. (Under SecAgg+ the same story runs end to end in
test_rounds.py; this keeps the plain path's refusal covered without another deployment.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from gridpoint.federation.client_app import sign_reply_mod
from gridpoint.federation.flower_nodes import FlowerNode, member_id, remember
from gridpoint.federation.rounds import RoundLoop
from gridpoint.federation.server_app import verifying
from gridpoint.federation.update_signing import SIGNATURE_RECORD
from gridpoint.node.home import NodeHome
from tests.federation.loopback import LoopbackGrid, member_context
from tests.helpers import MakeHome

RUN_ID = 91
FEDERATION = "fed-plain"


def _member(value: float) -> ClientApp:
    """A member that answers `value` everywhere, signed as client_app signs."""
    app = ClientApp()

    @app.train(mods=[sign_reply_mod])
    def train(msg: Message, context: Context) -> Message:
        arrays = ArrayRecord({"w": Array(np.full((3,), value, np.float32))})
        metrics = MetricRecord({"num-examples": 10.0, "train_loss": value})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    @app.evaluate(mods=[sign_reply_mod])
    def evaluate(msg: Message, context: Context) -> Message:
        metrics = MetricRecord({"num-examples": 10.0, "accuracy": value / 10, "eval_loss": 1.0})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def _reply(home: NodeHome, nid: int, value: float, tamper: bool = False) -> Message:
    app = _member(value)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, 0
    arrays = ArrayRecord({"w": Array(np.zeros((3,), np.float32))})
    ins = Message(
        RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 2})}),
        dst_node_id=nid,
        message_type="train",
        group_id="2",
    )
    ins.metadata.__dict__["_message_id"] = f"ins-{nid}"
    context = member_context(home.path, nid, FEDERATION, RUN_ID)
    TaskIdentity.node_id = nid
    try:
        reply = app(ins, context)
    finally:
        TaskIdentity.node_id = 0
    if tamper:  # changed after signing, as a member that lies about its metrics would
        reply.content.metric_records["metrics"]["num-examples"] = 1000.0
    return reply


def test_a_plain_round_aggregates_the_signed_updates_and_names_the_ones_it_left_out(
    make_home: MakeHome,
) -> None:
    a, b, liar, stranger = (make_home(n) for n in ("A", "B", "Liar", "Stranger"))
    trusted = {h.identity.node_id: b"" for h in (a, b, liar)}
    strategy = verifying(FedAvg, FEDERATION, trusted)(
        fraction_train=1.0, min_train_nodes=1, min_available_nodes=1
    )
    replies = [
        _reply(a, 1, 1.0),
        _reply(b, 2, 3.0),
        _reply(liar, 3, 50.0, tamper=True),
        _reply(stranger, 4, 50.0),
    ]
    arrays, _ = strategy.aggregate_train(2, replies)
    report = strategy.round_report[2]
    assert sorted(report["accepted"]) == sorted([a.identity.node_id, b.identity.node_id])
    refused = {r["node"]: r["reason"] for r in report["refused"]}
    assert "signature does not match" in refused[liar.identity.node_id]
    assert "not a trusted peer" in refused[stranger.identity.node_id]
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((3,), 2.0))


def test_an_unsigned_reply_is_refused_by_the_member_its_flower_node_was_registered_for(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: A's SuperNode registered as Flower node 11; its reply carries no signature.
    a, b = make_home("A"), make_home("B")
    remember(tmp_path, 11, FlowerNode("A", a.identity.node_id))
    unsigned = _reply(a, 11, 50.0)
    del unsigned.content[SIGNATURE_RECORD]
    trusted = {h.identity.node_id: b"" for h in (a, b)}
    strategy = verifying(FedAvg, FEDERATION, trusted, lambda nid: member_id(tmp_path, nid))(
        fraction_train=1.0, min_train_nodes=1, min_available_nodes=1
    )
    # Execute
    arrays, _ = strategy.aggregate_train(2, [unsigned, _reply(b, 12, 3.0)])
    # Assert: named by its node id, not by Flower's; only B's update is averaged.
    report = strategy.round_report[2]
    assert report["refused"] == [{"node": a.identity.node_id, "reason": "update is not signed"}]
    assert report["accepted"] == [b.identity.node_id]
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((3,), 3.0))


def test_a_signer_claim_that_is_no_node_id_never_names_the_refused_member(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: A's reply claims a signer that is 10,000 characters of text, not a node id.
    a = make_home("A")
    remember(tmp_path, 11, FlowerNode("A", a.identity.node_id))
    forged = _reply(a, 11, 50.0)
    forged.content.config_records[SIGNATURE_RECORD]["signer_id"] = "x" * 10_000
    strategy = verifying(
        FedAvg, FEDERATION, {a.identity.node_id: b""}, lambda nid: member_id(tmp_path, nid)
    )(fraction_train=1.0, min_train_nodes=1, min_available_nodes=1)
    # Execute
    strategy.aggregate_train(2, [forged])
    # Assert: refused, named by the member its Flower node was registered for; the claim
    # reaches neither the journal's entry nor its reason in full.
    [refused] = strategy.round_report[2]["refused"]
    assert refused["node"] == a.identity.node_id
    assert "x" * 100 not in refused["reason"]


def test_a_reply_whose_metric_is_no_number_is_refused_and_the_round_goes_on(
    make_home: MakeHome,
) -> None:
    # Prepare: A's signed reply gains a metric that is a list, as only a hostile member sends.
    a, b = make_home("A"), make_home("B")
    hostile = _reply(a, 1, 50.0)
    hostile.content.metric_records["metrics"]["m" * 5_000] = [1.0, 2.0]
    trusted = {h.identity.node_id: b"" for h in (a, b)}
    strategy = verifying(FedAvg, FEDERATION, trusted)(
        fraction_train=1.0, min_train_nodes=1, min_available_nodes=1
    )
    # Execute
    arrays, _ = strategy.aggregate_train(2, [hostile, _reply(b, 2, 3.0)])
    # Assert: refused by name with a bounded reason; B's update alone is averaged.
    report = strategy.round_report[2]
    [refused] = report["refused"]
    assert refused["node"] == a.identity.node_id
    assert "is not a number" in refused["reason"] and len(refused["reason"]) < 200
    assert report["accepted"] == [b.identity.node_id]
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((3,), 3.0))


def test_a_plain_round_names_a_member_the_superlink_answered_for_by_its_gridpoint_node_id(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: three members, recorded by Flower node id as the host registered them; the
    # SuperNode of the second is dead, so the SuperLink answers its messages with errors.
    homes = [make_home(n) for n in ("A", "B", "C")]
    members = {}
    for flower_id, (home, value) in enumerate(zip(homes, (1.0, 50.0, 3.0), strict=True), 11):
        remember(tmp_path, flower_id, FlowerNode(home.path.name, home.identity.node_id))
        members[flower_id] = (_member(value), member_context(home.path, flower_id, FEDERATION))
    grid = LoopbackGrid(members, gone=lambda nid, stage: nid == 12, answer_for_gone=True)
    trusted = {h.identity.node_id: b"" for h in homes}
    strategy = verifying(FedAvg, FEDERATION, trusted)(fraction_train=1.0, fraction_evaluate=1.0)
    events: list[dict[str, Any]] = []
    loop = RoundLoop(
        strategy,
        grid,  # type: ignore[arg-type]
        min_members=3,
        round_timeout=5.0,
        train_config=ConfigRecord({"federation": FEDERATION}),
        on_round=lambda r, arrays, event: events.append(event),
        member_of=lambda flower_id: member_id(tmp_path, flower_id),
    )
    # Execute
    arrays = loop.run(ArrayRecord({"w": Array(np.zeros((3,), np.float32))}), 1, 1)
    # Assert: the round went on with the others, and names the dead member as it names any.
    [event] = events
    assert sorted(event["accepted"]) == sorted(
        [homes[0].identity.node_id, homes[2].identity.node_id]
    )
    [refused] = event["refused"]
    assert refused["node"] == homes[1].identity.node_id
    assert refused["reason"].startswith("member failed: Error: Node Unavailable")
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((3,), 2.0))
    assert sorted(event["member_eval"]) == sorted(event["accepted"])


def test_a_rounds_seconds_leave_out_its_wait_for_members_and_the_wait_is_reported(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: three members, the third online only after the loop has polled three times
    # (a resumed run's members reconnecting); a fake clock that only sleeping moves.
    homes = [make_home(n) for n in ("A", "B", "C")]
    members = {}
    for flower_id, home in enumerate(homes, 11):
        remember(tmp_path, flower_id, FlowerNode(home.path.name, home.identity.node_id))
        members[flower_id] = (_member(1.0), member_context(home.path, flower_id, FEDERATION))
    polls: list[int] = []

    class LateGrid(LoopbackGrid):
        def get_node_ids(self) -> list[int]:
            polls.append(1)
            return list(self.members)[: 2 if len(polls) <= 3 else 3]

    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    trusted = {h.identity.node_id: b"" for h in homes}
    strategy = verifying(FedAvg, FEDERATION, trusted)(fraction_train=1.0, fraction_evaluate=1.0)
    events: list[dict[str, Any]] = []
    loop = RoundLoop(
        strategy,
        LateGrid(members),  # type: ignore[arg-type]
        min_members=3,
        round_timeout=60.0,
        train_config=ConfigRecord({"federation": FEDERATION}),
        on_round=lambda r, arrays, event: events.append(event),
        member_of=lambda flower_id: member_id(tmp_path, flower_id),
        clock=lambda: now[0],
        sleep=sleep,
    )
    # Execute
    loop.run(ArrayRecord({"w": Array(np.zeros((3,), np.float32))}), 1, 1)
    # Assert: the three polls' wait is the round's wait, not its duration; all three trained.
    [event] = events
    assert event["waited_seconds"] == 3.0
    assert event["seconds"] == 0.0
    assert len(event["accepted"]) == 3
