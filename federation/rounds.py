"""The round loop of a federation: wait for members, train, evaluate, checkpoint, journal.

Flower's `Strategy.start` always begins at round 1 and evaluates the starting model only
on the server; this loop does what it does (configure, send, aggregate) with the same
strategy, and adds what a federation needs here:

- round 0: once --min-members members are online, the starting model evaluated by every
  member on its private evaluation set, so a round's metric can be read against where the
  federation began;
- before each round, up to --round-timeout for --min-members members to be online, then
  the round goes on with those online (a member that died costs one wait, never the run);
  a member that joins late or comes back is sampled from the next round on;
- after each round, a checkpoint of the global model and the round state (checkpoint.py),
  from which a restarted host continues; a resumed run starts after the last checkpoint.

With `fed host --dp`, each round's average gets the host's Gaussian noise (privacy.py) and
the round's event says the epsilon spent so far; with --dp-adaptive-clip, each round's train
config carries the round's clip, and the members' signed answers whether their update was
within it move the next round's (the event says both).

With secure aggregation (`fed host --secure-aggregation`), a round's training is one
SecAgg+ round (secure_round.py): the loop gets the members' weighted average and never a
member's update; evaluation stays as it is (its replies are metrics, not updates).

Replies the SuperLink sends in the stead of a member that failed are set apart before the
strategy or the SecAgg+ workflow sees them (member_failures.py): the round goes on without
that member and its event names it, by gridpoint node id, among the refused.

Each round's journal event carries the accepted and refused members, the aggregated train
and evaluation metrics (evaluation weighted by each member's number of examples), each
member's own signed evaluation, the round's duration from the moment its members were online
(`seconds`) and how long it waited for them before that (`waited_seconds`): a resumed run's
first round waits for its members to reconnect, which is no cost of the round.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from gridpoint.federation.flower_nodes import unrecorded
from gridpoint.federation.member_failures import FailureGrid
from gridpoint.federation.privacy import CentralNoise
from gridpoint.federation.secure_round import SecureSettings, SignedGrid, secure_train_round

__all__ = ["RoundLoop"]


@dataclass
class RoundLoop:
    """Runs rounds first..last of `strategy` (a verifying strategy, see server_app.py)."""

    strategy: Any
    grid: Grid
    min_members: int
    round_timeout: float
    train_config: ConfigRecord
    #: Called after each round with (round, global arrays, the round's journal event).
    on_round: Callable[[int, ArrayRecord, dict[str, Any]], None]
    log: Callable[[str], None] = field(default=lambda line: None)
    #: SecAgg+ settings, None for plain rounds.
    secure: SecureSettings | None = None
    #: Under SecAgg+: (reply, round) -> its signer; raises for a reply to leave out.
    check_secure: Callable[[Message, int], str] | None = None
    #: DP-FedAvg (`fed host --dp`): the host's noise on each round's average, None if off.
    noise: CentralNoise | None = None
    #: Called before each round's wait for members (the ServerApp refreshes its trust).
    before_round: Callable[[], None] = field(default=lambda: None)
    #: A member's gridpoint node id from its Flower node id (flower_nodes.member_id).
    member_of: Callable[[int], str] = unrecorded
    #: The loop's clock and sleep (a test gives a fake pair: waits cost it no time).
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def wait_for_members(self, patient: bool = False) -> int:
        """Members online, after waiting up to round_timeout (patient: forever) for min_members."""
        deadline = float("inf") if patient else self.clock() + self.round_timeout
        while True:
            online = len(list(self.grid.get_node_ids()))
            if online >= self.min_members or (online and self.clock() >= deadline):
                break
            self.sleep(1.0)
        if online < self.min_members:
            self.log(f"only {online} of {self.min_members} member(s) online; going on with them")
        # Flower's sampler would otherwise wait forever for a member that is gone.
        needed = min(self.min_members, online)
        self.strategy.min_available_nodes = needed
        self.strategy.min_train_nodes = needed
        self.strategy.min_evaluate_nodes = needed
        return online

    def evaluate(
        self, server_round: int, arrays: ArrayRecord, patient: bool = False
    ) -> dict[str, Any]:
        """Every online member evaluates `arrays` on its private evaluation set."""
        self.wait_for_members(patient)
        # A member that fails here is left out of the evaluation (and logged), not refused.
        replies = FailureGrid(self.grid, self.member_of).send_and_receive(
            self.strategy.configure_evaluate(server_round, arrays, ConfigRecord(), self.grid),
            timeout=self.round_timeout,
        )
        metrics = self.strategy.aggregate_evaluate(server_round, replies)
        return {
            "eval_metrics": dict(metrics) if metrics is not None else {},
            "member_eval": self.strategy.member_eval.pop(server_round, {}),
        }

    def run(self, arrays: ArrayRecord, first: int, last: int) -> ArrayRecord:
        """Rounds first..last from `arrays`; returns the final global arrays."""
        for server_round in range(first, last + 1):
            started = self.clock()
            self.before_round()
            self.wait_for_members()
            working = self.clock()
            adaptive = self.noise.adaptive if self.noise is not None else None
            clip = adaptive.clip if adaptive is not None else None
            if self.secure is None:
                config = self.train_config
                if clip is not None:
                    config = ConfigRecord({**dict(config), "dp-clip": clip})
                failures = FailureGrid(self.grid, self.member_of)
                replies = failures.send_and_receive(
                    self.strategy.configure_train(server_round, arrays, config, self.grid),
                    timeout=self.round_timeout,
                )
                new_arrays, train_metrics = self.strategy.aggregate_train(server_round, replies)
                report = self.strategy.round_report.pop(server_round)
                report["refused"] = [*report["refused"], *failures.failed]
            else:
                new_arrays, train_metrics, report = self._secure_train(server_round, arrays)
            if new_arrays is not None:
                if self.noise is not None:
                    new_arrays = self.noise.add(new_arrays, len(report["accepted"]))
                arrays = new_arrays
            if self.noise is not None:
                # Counted for every planned round, whether or not it released a model.
                report["privacy"] = {
                    "epsilon": round(self.noise.spent(server_round), 4),
                    "delta": self.noise.delta,
                }
            if adaptive is not None:
                # Only the members whose update was verified and aggregated move the clip.
                within = [
                    bool(metrics.get("dp-within-clip"))
                    for metrics in report.get("member_metrics", {}).values()
                ]
                report["privacy"]["clip"] = clip
                report["privacy"]["next_clip"] = adaptive.update(within)
            event = {
                "event": "round",
                "round": server_round,
                **report,
                "metrics": dict(train_metrics) if train_metrics is not None else {},
                **self.evaluate(server_round, arrays),
            }
            event["seconds"] = round(self.clock() - working, 2)
            event["waited_seconds"] = round(working - started, 2)
            self.on_round(server_round, arrays, event)
        return arrays

    def _secure_train(
        self, server_round: int, arrays: ArrayRecord
    ) -> tuple[ArrayRecord | None, dict[str, float], dict[str, Any]]:
        """One SecAgg+ round over the members online: (average, train metrics, report)."""
        assert self.secure is not None and self.check_secure is not None
        failures = FailureGrid(self.grid, self.member_of)
        grid = SignedGrid(failures, self.check_secure, server_round)
        nodes = sorted(int(n) for n in self.grid.get_node_ids())
        average, members = (
            secure_train_round(
                grid,
                nodes,
                arrays,
                {"server-round": server_round, **dict(self.train_config)},
                self.secure,
            )
            if len(nodes) >= 2
            else (None, [])
        )
        if average is None:
            self.log(
                f"round {server_round}: secure aggregation did not complete "
                f"({len(nodes)} member(s) online, at least 2 and the reconstruction threshold "
                "needed); the global model is unchanged"
            )
        accepted = [signer for signer, _, _ in members]
        self.strategy.accepted_by_round[server_round] = accepted
        total = sum(n for _, _, n in members)
        names = {k for _, m, _ in members for k, v in m.items() if isinstance(v, int | float)}
        metrics = (
            {
                k: sum(float(m.get(k, 0.0)) * n for _, m, n in members) / total
                for k in names - {"num-examples"}
            }
            if total
            else {}
        )
        report = {
            "accepted": accepted,
            # A member that failed after it was summed (unmasking) still counts as summed.
            "refused": [r for r in grid.refused + failures.failed if r["node"] not in accepted],
            "member_metrics": {signer: m for signer, m, _ in members},
            "payload_bytes": [],
            "secure_aggregation": {
                "summed": len(members),
                # What reached the ServerApp as arrays in this round's train replies: 0,
                # the masked vectors travel as SecAgg+'s integer vectors.
                "array_bytes_received": grid.array_bytes_received,
            },
        }
        return average, metrics, report
