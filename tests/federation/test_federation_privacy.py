"""`fed host --dp`: DP-FedAvg's calibration, clipping, noise, and the ledger's refusal.

In-process and fast: the accountant is dp-accounting itself, the clipping and noise Flower's
own helpers; the budget check is the node's real ledger in a real home.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import dp_accounting
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from gridpoint.errors import ConfigError, PrivacyBudgetExceeded
from gridpoint.federation.client_app import sign_reply_mod
from gridpoint.federation.host import HostOptions, _plan_privacy
from gridpoint.federation.privacy import (
    AdaptiveClip,
    CentralNoise,
    calibrate,
    clip_update,
    within_clip,
)
from gridpoint.federation.rounds import RoundLoop
from gridpoint.federation.server_app import verifying
from gridpoint.node.home import NodeHome
from gridpoint.node.tuning.privacy import ledger_report
from gridpoint.trainers.privacy.accounting import epsilon_of
from tests.federation.loopback import member_context
from tests.helpers import MakeHome

OPTS = HostOptions(
    federation="fed-dp",
    study=Path("unused.toml"),
    rounds=4,
    min_members=2,
    listen="127.0.0.1:0",
    lora=False,
    strategy="fedavg",
    round_timeout=60.0,
    params={},
    db=None,
    dp=True,
    dp_epsilon=4.0,
    dp_delta=1e-5,
)


def test_the_noise_spends_the_budget_over_the_planned_rounds_by_dp_accountings_own_figure() -> None:
    z = calibrate(4.0, 1e-5, rounds=4)
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(z), 4)
    assert accountant.get_epsilon(1e-5) <= 4.0
    assert accountant.get_epsilon(1e-5) > 3.9  # the smallest such noise, not any
    noise = CentralNoise(z, clip=1.0, delta=1e-5)
    spent = [noise.spent(r) for r in range(5)]
    assert spent[0] == 0.0 and spent == sorted(spent) and 3.9 < spent[4] <= 4.0


def test_a_members_update_is_clipped_to_the_norm_and_the_host_adds_noise_scaled_by_members() -> (
    None
):
    received = ArrayRecord({"w": Array(np.zeros((10, 10), np.float32))})
    new = ArrayRecord({"w": Array(np.full((10, 10), 3.0, np.float32))})
    clipped = clip_update(new, received, clip=1.0)
    assert np.linalg.norm(clipped["w"].numpy()) == pytest.approx(1.0, rel=1e-5)
    assert clipped["w"].numpy().dtype == np.float32
    small = ArrayRecord({"w": Array(np.full((10, 10), 0.01, np.float32))})
    np.testing.assert_array_equal(
        clip_update(small, received, 1.0)["w"].numpy(), small["w"].numpy()
    )
    # Noise standard deviation z * clip / members, as Flower's DP-FedAvg computes it.
    zeros = ArrayRecord({"w": Array(np.zeros((300, 300), np.float32))})
    noisy = CentralNoise(2.0, clip=1.0, delta=1e-5).add(zeros, members=4)
    assert np.std(noisy["w"].numpy()) == pytest.approx(0.5, rel=0.02)


def _set_budget(home: NodeHome, budget: float) -> None:
    text = home.config_path.read_text().replace(
        "budget_epsilon = 0.0", f"budget_epsilon = {budget}"
    )
    home.config_path.write_text(text)


def test_a_federation_is_charged_before_it_starts_and_refused_past_the_budget(
    make_home: MakeHome,
) -> None:
    home = make_home("H")
    _set_budget(home, 6.0)
    assert _plan_privacy(home, OPTS, charge=True) > 0
    [total] = ledger_report(home).totals
    assert total.epsilon == 4.0
    # A second run of the federation, epsilon 4 again, would take it to 8 of 6: refused,
    # with nothing written; another federation has a budget of its own.
    with pytest.raises(PrivacyBudgetExceeded, match="would take it to 8"):
        _plan_privacy(home, OPTS, charge=True)
    _plan_privacy(home, replace(OPTS, federation="fed-dp-2", dp_epsilon=1.0), charge=True)
    assert sorted(t.epsilon for t in ledger_report(home).totals) == [1.0, 4.0]
    # A resumed run was charged when it started: not again.
    _plan_privacy(home, OPTS, charge=False)
    assert len(ledger_report(home).releases) == 2
    with pytest.raises(ConfigError, match="--dp-epsilon"):
        _plan_privacy(home, replace(OPTS, dp_epsilon=0.0), charge=True)


def test_adaptive_clipping_spends_what_the_fixed_noise_would_and_follows_the_median_norm() -> None:
    # Prepare: the calibrated multiplier of a 4-round federation of 5 members.
    z = calibrate(4.0, 1e-5, rounds=4)
    adaptive = AdaptiveClip.start(clip=100.0, noise_multiplier=z, members=5)
    # Assert: the updates' noise and the count's together are accounted as z alone, by
    # dp-accounting (the count's sensitivity is 1 of members in 0/1 answers, centred: 1/2).
    split = dp_accounting.ComposedDpEvent(
        [
            dp_accounting.GaussianDpEvent(adaptive.update_multiplier),
            dp_accounting.GaussianDpEvent(2 * adaptive.count_stddev),
        ]
    )
    assert adaptive.update_multiplier > z
    assert epsilon_of(split, 1e-5) == pytest.approx(
        epsilon_of(dp_accounting.GaussianDpEvent(z), 1e-5), rel=1e-3
    )
    # Execute: members with update norms 0.5 .. 8 answer, round after round, whether theirs
    # was within the clip, by the check each member runs; from far above and far below.
    received = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    updates = [ArrayRecord({"w": Array(np.full(4, n / 2, np.float32))}) for n in (0.5, 1, 2, 4, 8)]
    ends = []
    for start in (100.0, 0.01):
        adaptive.clip = start
        for _ in range(80):
            adaptive.update([within_clip(u, received, adaptive.clip) for u in updates])
        ends.append(adaptive.clip)
    # Assert: both end among the members' norms, around the median (2), not at either start.
    assert all(0.5 <= end <= 8 for end in ends), ends
    # A round's noise uses the round's clip and the updates' own multiplier.
    zeros = ArrayRecord({"w": Array(np.zeros((300, 300), np.float32))})
    adaptive.clip = 2.0
    noisy = CentralNoise(z, clip=1.0, delta=1e-5, adaptive=adaptive).add(zeros, members=4)
    assert np.std(noisy["w"].numpy()) == pytest.approx(
        adaptive.update_multiplier * 2.0 / 4, rel=0.02
    )


class _PlainGrid:
    """A SuperLink in one process for plain rounds: each message to its member's ClientApp."""

    def __init__(self, members: dict[int, tuple[ClientApp, Context]]) -> None:
        self.members = members
        self.train_configs: list[dict[str, object]] = []
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 92, 0

    def get_node_ids(self) -> list[int]:
        return list(self.members)

    def send_and_receive(self, messages: object, *, timeout: float | None = None) -> list[Message]:
        replies = []
        for msg in messages:  # type: ignore[attr-defined]
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            msg.metadata.__dict__["_run_id"] = 92
            msg = copy.deepcopy(msg)
            if msg.metadata.message_type == "train":
                self.train_configs.append(dict(msg.content.config_records["config"]))
            app, context = self.members[msg.metadata.dst_node_id]
            TaskIdentity.node_id = msg.metadata.dst_node_id
            try:
                replies.append(app(msg, context))
            finally:
                TaskIdentity.node_id = 0
        return replies


def _member(norm: float) -> ClientApp:
    """A member whose update has L2 norm `norm`; it clips and answers as client_app does."""
    app = ClientApp()

    @app.train(mods=[sign_reply_mod])
    def train(msg: Message, context: Context) -> Message:
        received = msg.content.array_records["arrays"]
        new = ArrayRecord({"w": Array(received["w"].numpy() + np.float32(norm / 2))})
        clip = float(msg.content.config_records["config"]["dp-clip"])  # type: ignore[arg-type]
        metrics = MetricRecord(
            {"num-examples": 1.0, "dp-weight": 1.0,
             "dp-within-clip": float(within_clip(new, received, clip))}
        )  # fmt: skip
        content = RecordDict({"arrays": clip_update(new, received, clip), "metrics": metrics})
        return Message(content, reply_to=msg)

    @app.evaluate(mods=[sign_reply_mod])
    def evaluate(msg: Message, context: Context) -> Message:
        metrics = MetricRecord(
            {"num-examples": 1.0, "dp-weight": 1.0, "accuracy": 0.5, "eval_loss": 1.0}
        )
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


def test_adaptive_rounds_send_each_round_its_clip_and_move_it_by_the_members_answers(
    make_home: MakeHome,
) -> None:
    # Prepare: two members whose updates have norms 1 and 6, a host starting at clip 3.
    homes = [make_home("A"), make_home("B")]
    members = {
        nid: (_member(norm), member_context(home.path, nid, "fed-adaptive", run_id=92))
        for nid, norm, home in ((1, 1.0, homes[0]), (2, 6.0, homes[1]))
    }
    grid = _PlainGrid(members)
    strategy = verifying(FedAvg, "fed-adaptive", {h.identity.node_id: b"" for h in homes})(
        weighted_by_key="dp-weight", fraction_train=1.0, fraction_evaluate=1.0,
        min_train_nodes=2, min_evaluate_nodes=2, min_available_nodes=2,
    )  # fmt: skip
    z = calibrate(8.0, 1e-5, rounds=3)
    noise = CentralNoise(z, clip=3.0, delta=1e-5, adaptive=AdaptiveClip.start(3.0, z, 2))
    events: list[dict[str, Any]] = []
    loop = RoundLoop(
        strategy, grid, 2, 5.0, ConfigRecord({"federation": "fed-adaptive"}),  # type: ignore[arg-type]
        lambda r, arrays, event: events.append(event), noise=noise,
    )  # fmt: skip
    # Execute
    loop.run(ArrayRecord({"w": Array(np.zeros(4, np.float32))}), 1, 3)
    # Assert: each round's members got the round's clip, the one the previous round moved to.
    clips = [e["privacy"]["clip"] for e in events]
    assert clips[0] == 3.0
    assert [c["dp-clip"] for c in grid.train_configs] == [c for c in clips for _ in range(2)]
    assert clips[1:] == [e["privacy"]["next_clip"] for e in events[:-1]]
    # Each member's signed answer reached the host: norm 1 within 3, norm 6 not.
    within = {m["dp-within-clip"] for m in events[0]["member_metrics"].values()}
    assert within == {0.0, 1.0}
