"""SecAgg+ rounds in-process: Flower's real workflow and client mods, gridpoint's signatures.

The host side is secure_round.py driving flwr's SecAggPlusWorkflow; each member is a
ClientApp with gridpoint's signing mod around Flower's secaggplus_mod, and a train handler
that answers a fixed update (the training itself is the e2e tests' concern). Messages go
through a loopback Grid that hands each one to its member's ClientApp, as a SuperLink would:
every stage, every key share and every masked vector takes the real path, in seconds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from uuid import uuid4

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins
from flwr.supercore.task_identity import TaskIdentity

from gridpoint.federation.client_app import secure_aggregation_mod, sign_reply_mod
from gridpoint.federation.secure_round import SecureSettings, SignedGrid, secure_train_round
from gridpoint.federation.server_app import _verify_secure
from gridpoint.node.home import NodeHome
from tests.helpers import MakeHome

FEDERATION = "fed-secure"
RUN_ID = 77
SETTINGS = SecureSettings(reconstruction_threshold=0.5, max_weight=1000.0, clipping_range=8.0)


def _update(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "encoder.weight": rng.normal(0, 0.5, (4, 3)).astype(np.float32),
        "head.bias": rng.normal(0, 0.5, (3,)).astype(np.float32),
    }


def _member_app(update: dict[str, np.ndarray], examples: int) -> ClientApp:
    app = ClientApp()

    @app.train(mods=[sign_reply_mod, secure_aggregation_mod])
    def train(msg: Message, context: Context) -> Message:
        fitins = recorddict_to_fitins(msg.content, keep_input=True)
        keys = [str(k) for k in json.loads(str(fitins.config["array-keys"]))]
        fitres = FitRes(
            Status(Code.OK, ""),
            ndarrays_to_parameters([update[k] for k in keys]),
            examples,
            {"train_loss": float(examples) / 100},
        )
        return Message(content=fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)

    return app


@dataclass
class LoopbackGrid:
    """A SuperLink in one process: each message is handled by its node's ClientApp."""

    members: dict[int, tuple[ClientApp, Context]]
    #: (node id, stage) -> True when that member is gone from that stage on.
    gone: Callable[[int, str], bool] = lambda nid, stage: False
    seen: list[Message] = field(default_factory=list)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.members)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        replies = []
        for msg in messages:
            nid = msg.metadata.dst_node_id
            stage = str(msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])
            if self.gone(nid, stage):
                continue
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            msg.metadata.__dict__["_run_id"] = RUN_ID
            # A SuperLink delivers a copy: the workflow sends one content to every node.
            msg = copy.deepcopy(msg)
            app, context = self.members[nid]
            TaskIdentity.node_id = nid
            try:
                reply = app(msg, context)
            finally:
                TaskIdentity.node_id = 0
            self.seen.append(reply)
            replies.append(reply)
        return replies


@pytest.fixture
def homes(make_home: MakeHome) -> list[NodeHome]:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, RUN_ID, 0
    return [make_home(f"S{i}") for i in range(3)]


def _grid(homes: list[NodeHome], examples: list[int], **kw: object) -> LoopbackGrid:
    members = {}
    for i, (home, n) in enumerate(zip(homes, examples, strict=True)):
        context = Context(
            run_id=RUN_ID,
            node_id=100 + i,
            node_config={"gridpoint-home": str(home.path)},
            state=RecordDict(),
            run_config={"federation": FEDERATION},
        )
        members[100 + i] = (_member_app(_update(i), n), context)
    return LoopbackGrid(members, **kw)  # type: ignore[arg-type]


def _round(
    loop: LoopbackGrid, trusted: list[NodeHome]
) -> tuple[ArrayRecord | None, list[tuple[str, dict[str, object], int]], SignedGrid]:
    keys = {h.identity.node_id: h.identity.public_key for h in trusted}
    signed = SignedGrid(
        loop,  # type: ignore[arg-type]
        lambda reply, r: _verify_secure(reply, FEDERATION, r, keys),
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
