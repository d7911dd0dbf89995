"""One training round under Flower's SecAgg+: the host learns only the members' weighted sum.

Flower's SecAggPlusWorkflow (server) and secaggplus_mod (ClientApp) do the protocol and all
of its cryptography; this module only drives that workflow for one round of our own loop
(rounds.py) and puts gridpoint's signatures around it:

- every reply of every stage (public keys, encrypted key shares, the masked and quantized
  update, the unmasking shares) is checked against the member's node key before the
  workflow sees it (signed_grid); an unsigned or wrongly signed reply is left out and the
  round treats that member as dropped, so SecAgg+ recovers its masks from the others'
  shares while at least the reconstruction threshold of members remain (the SuperLink's
  error replies for a member that failed are set apart before, by member_failures.py);
- the round report names who was summed and who was left out, and counts the array bytes
  that reached the ServerApp in train replies (0: no unmasked update ever arrives; the
  masked vector travels as SecAgg+'s own integer vectors).

It must never see, log or keep a member's unmasked update, and never lets a reply reach the
workflow unverified. Only FedAvg composes with it (the workflow already returns the average).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

from gridpoint.federation.member_failures import FailureGrid, claimed_signer

__all__ = ["SECURE_CONFIG", "SecureSettings", "SignedGrid", "secure_train_round"]

log = logging.getLogger("gridpoint.federation")
#: The FitIns config key of the array names (a JSON list), in the order of the legacy vector.
SECURE_CONFIG = "array-keys"


@dataclass(frozen=True)
class SecureSettings:
    """SecAgg+ parameters (see flwr's SecAggPlusWorkflow)."""

    #: Fraction of a member's neighbours whose shares rebuild its secrets; members may
    #: drop while at least this many of each neighbourhood remain.
    reconstruction_threshold: float = 0.5
    #: The largest number of training examples a member may weight its update by.
    max_weight: float = 1000.0
    #: Every weight, times its member's share of max_weight, must lie in +-clipping_range.
    clipping_range: float = 8.0
    #: 2**22 levels over [-clip, clip]: at most 2**(32-22) = 1024 members per round.
    quantization_range: int = 2**22
    timeout: float | None = None


@dataclass
class SignedGrid:
    """A Grid whose replies are checked (check returns the signer or raises) before use."""

    #: The members' own replies only: who failed is the FailureGrid's to keep.
    grid: FailureGrid
    #: (reply, round) -> signer id; raises for a reply that must be left out.
    check: Callable[[Message, int], str]
    server_round: int
    signer_of: dict[int, str] = field(default_factory=dict)
    refused: list[dict[str, str]] = field(default_factory=list)
    #: Bytes of array records that reached the ServerApp in train replies.
    array_bytes_received: int = 0

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        kept = []
        for reply in self.grid.send_and_receive(messages, timeout=timeout):
            nid = int(reply.metadata.src_node_id)
            self.array_bytes_received += sum(
                len(a.data)
                for record in reply.content.array_records.values()
                for a in record.values()
            )
            try:
                signer = self.check(reply, self.server_round)
            except Exception as exc:  # any failure to verify leaves the reply out
                self._refuse(nid, str(exc) or "update is not signed", claimed_signer(reply))
                continue
            # One Flower node speaks for one gridpoint node for the whole round.
            if self.signer_of.setdefault(nid, signer) != signer:
                self._refuse(
                    nid, f"signed by {signer}, earlier in the round by {self.signer_of[nid]}"
                )
                continue
            kept.append(reply)
        return kept

    def _refuse(self, nid: int, reason: str, claimed: str | None = None) -> None:
        node = claimed or self.signer_of.get(nid) or self.grid.member_of(nid)
        if not any(r["node"] == node for r in self.refused):
            self.refused.append({"node": node, "reason": reason})
        log.warning("secure aggregation: reply of %s left out: %s", node, reason)


@dataclass
class _Member:
    """What the workflow needs of a legacy ClientProxy: the Flower node id."""

    node_id: int


class _RoundPlan:
    """The legacy strategy the workflow calls: who trains on what; keep the average."""

    def __init__(self, nodes: list[int], arrays: ArrayRecord, config: dict[str, Any]) -> None:
        self.nodes = nodes
        self.keys = list(arrays.keys())
        self.parameters = ndarrays_to_parameters([arrays[k].numpy() for k in self.keys])
        # A legacy config holds scalars only: the names travel as one JSON string.
        self.config = {**config, SECURE_CONFIG: json.dumps(self.keys)}
        self.result: tuple[list[np.ndarray], list[tuple[int, dict[str, Any], int]]] | None = None

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list[Any]:
        return [(_Member(n), FitIns(self.parameters, dict(self.config))) for n in self.nodes]

    def aggregate_fit(self, server_round: int, results: list[Any], failures: list[Any]) -> Any:
        # Every result's parameters are the workflow's unmasked *average* (never a member's).
        average = parameters_to_ndarrays(results[0][1].parameters) if results else []
        self.result = (
            average,
            [(p.node_id, dict(r.metrics), int(r.num_examples)) for p, r in results],
        )
        return results[0][1].parameters if results else None, {}


class _Workflow(SecAggPlusWorkflow):
    def setup_stage(self, grid: Any, context: Any, state: WorkflowState) -> bool:
        super().setup_stage(grid, context, state)
        if not state.nid_to_neighbours:  # it stopped before building the neighbourhoods
            return False
        # A member whose keys never arrived (dropped, or its reply refused) shared nothing:
        # it is not part of this round's masks, so it is no dropout to unmask either.
        for nid in state.sampled_node_ids - state.active_node_ids:
            state.nid_to_neighbours.pop(nid, None)
            for neighbours in state.nid_to_neighbours.values():
                neighbours.discard(nid)
        state.sampled_node_ids = set(state.active_node_ids)
        return bool(self._check_threshold(state))


def _as(values: np.ndarray, dtype: Any) -> np.ndarray:
    # The average comes back as floats off a quantization grid: integers are rounded to it.
    if np.issubdtype(dtype, np.integer):
        values = np.rint(values)
    return np.asarray(values, dtype=dtype)


def secure_train_round(
    grid: SignedGrid,
    nodes: list[int],
    arrays: ArrayRecord,
    config: dict[str, Any],
    settings: SecureSettings,
) -> tuple[ArrayRecord | None, list[tuple[str, dict[str, Any], int]]]:
    """One SecAgg+ round: (the new average or None if the round failed, [(signer, metrics, n)]).

    nodes: the Flower node ids that train this round (at least 2).
    """
    plan = _RoundPlan(nodes, arrays, config)
    # num_shares 1.0: every member shares its secrets with every other one this round.
    workflow = _Workflow(
        num_shares=1.0,
        reconstruction_threshold=settings.reconstruction_threshold,
        max_weight=settings.max_weight,
        clipping_range=settings.clipping_range,
        quantization_range=settings.quantization_range,
        timeout=settings.timeout,
    )
    context = LegacyContext(
        Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        strategy=plan,  # type: ignore[arg-type]
    )
    context.state.config_records["config"] = ConfigRecord({"current_round": grid.server_round})
    context.state.array_records["parameters"] = ArrayRecord()
    # SignedGrid answers the two calls the workflow makes of a Grid.
    workflow(cast(Grid, grid), context)
    if plan.result is None:
        return None, []
    average, members = plan.result
    new = ArrayRecord(
        {
            k: Array(_as(v, arrays[k].numpy().dtype).reshape(arrays[k].shape))
            for k, v in zip(plan.keys, average, strict=True)
        }
    )
    return new, [(grid.signer_of[nid], metrics, n) for nid, metrics, n in members]
