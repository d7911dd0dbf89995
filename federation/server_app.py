"""The ServerApp the host's SuperLink runs: verify every update, aggregate, record the run.

The rounds themselves are rounds.py's: round 0 evaluates the starting model on every
member's evaluation set once --min-members members are online; each round trains, then
evaluates the new global model on every member's private evaluation set (Flower's
evaluate phase, weighted by size), then checkpoints (checkpoint.py). A run submitted with
a checkpoint in its folder continues after the checkpoint's round (`fed host --resume`).

Updates (and evaluation replies) are checked before aggregation (the outermost step): signed by a trusted peer of
the host, over exactly the bytes received, for this federation, round and run. Refused
updates are left out with a log line naming the node and reason; the round goes on with
the others. Under --secure-aggregation every SecAgg+ stage's reply is checked the same way
(secure_round.py) and the round sees only the members' average. Progress, the final result and the final global model (a from_pretrained
folder) go to the host's federation folder, which `fed host` reads to report, publish and
keep the model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedYogi

from gridpoint.errors import GridpointError
from gridpoint.federation.checkpoint import load_checkpoint, save_checkpoint
from gridpoint.federation.flower_nodes import member_id, unrecorded
from gridpoint.federation.member_failures import reply_member
from gridpoint.federation.model_state import build_model, get_weights, set_weights, spec_from_json
from gridpoint.federation.privacy import ACCOUNTANT, PROTECTED, AdaptiveClip, CentralNoise
from gridpoint.federation.rounds import RoundLoop
from gridpoint.federation.secure_round import SecureSettings
from gridpoint.federation.update_signing import (
    SIGNATURE_RECORD,
    UpdateContext,
    secure_parts,
    update_digest,
    update_parts,
    verify_update,
)
from gridpoint.trainers.saved_model import TrainedModel, save_trained

__all__ = ["MODEL_DIR", "STRATEGIES", "app", "verifying"]

#: Where, in the run's folder, the final global model is saved (a from_pretrained folder).
MODEL_DIR = "model"
STRATEGIES = {"fedavg": FedAvg, "fedadam": FedAdam, "fedyogi": FedYogi}
log = logging.getLogger("gridpoint.federation")


class _Journal:
    """Appends progress events (JSON lines) for `fed host` to read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **event: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")


def verifying(
    base: type,
    federation: str,
    trusted: dict[str, bytes],
    member_of: Callable[[int], str] = unrecorded,
) -> Any:
    """A subclass of the strategy `base` that drops unverified replies before aggregating.

    A refused reply is named by reply_member: the signer it claims, else the member its Flower
    node was registered for (member_of, as the round loop's).

    Train replies are checked in aggregate_train, evaluation replies in aggregate_evaluate;
    what each round accepted and refused is kept in round_report / member_eval for the
    round loop (rounds.py) to journal.
    """

    # The strategy class is chosen at run time, so the checker cannot see the base.
    class Verifying(base):  # type: ignore[misc]
        accepted_by_round: dict[int, list[str]] = {}  # noqa: RUF012
        round_report: dict[int, dict[str, Any]] = {}  # noqa: RUF012
        member_eval: dict[int, dict[str, dict[str, float]]] = {}  # noqa: RUF012

        def _check(
            self, server_round: int, replies: Iterable[Message]
        ) -> tuple[list[Message], list[str], list[dict[str, str]]]:
            kept, accepted, refused = [], [], []
            # Error replies never come here: the round loop sets them apart (member_failures.py).
            for reply in replies:
                try:
                    signer = _verify(reply, federation, server_round, trusted)
                except (GridpointError, KeyError, TypeError, ValueError) as exc:
                    # ValueError: a metric that is no number (update_parts), said as such.
                    reason = (
                        str(exc)
                        if isinstance(exc, GridpointError | ValueError)
                        else "update is not signed"
                    )
                    node = reply_member(reply, member_of)
                    refused.append({"node": node, "reason": reason})
                    log.warning("reply refused: round %s node %s: %s", server_round, node, reason)
                    continue
                kept.append(reply)
                accepted.append(signer)
            return kept, accepted, refused

        def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
            kept, accepted, refused = self._check(server_round, replies)
            self.accepted_by_round[server_round] = accepted
            self.round_report[server_round] = {
                "accepted": accepted,
                "refused": refused,
                # Each member's own metrics, as it signed them (the UI draws them per member).
                "member_metrics": {
                    signer: update_parts(reply.content)[1]
                    for signer, reply in zip(accepted, kept, strict=True)
                },
                "payload_bytes": [_payload_bytes(r) for r in kept],
            }
            return super().aggregate_train(server_round, kept)

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
            kept, accepted, _ = self._check(server_round, replies)
            self.member_eval[server_round] = {
                signer: update_parts(reply.content)[1]
                for signer, reply in zip(accepted, kept, strict=True)
            }
            return super().aggregate_evaluate(server_round, kept)

    return Verifying


def _round_metrics(event: dict[str, Any]) -> dict[str, float]:
    train, evaluation = event["metrics"], event["eval_metrics"]
    metrics = {k: float(v) for k, v in train.items() if k == "train_loss"}
    metrics.update({k: float(v) for k, v in evaluation.items() if k in ("accuracy", "eval_loss")})
    return metrics


def _payload_bytes(reply: Message) -> int:
    return sum(len(a.data) for a in reply.content.array_records["arrays"].values())


#: What a signature covers in a reply: its arrays (dtype, shape, bytes) and its metrics.
PartsOf = Callable[
    [RecordDict], tuple[dict[str, tuple[str, tuple[int, ...], bytes]], dict[str, float]]
]


def _verify(
    reply: Message,
    federation: str,
    server_round: int,
    trusted: dict[str, bytes],
    parts: PartsOf = update_parts,
) -> str:
    """Checks a reply's signature over what parts says it covers (a plain update's arrays and
    metrics; with secure_parts, everything a SecAgg+ stage reply carries)."""
    record = dict(reply.content.config_records[SIGNATURE_RECORD])
    arrays, metrics = parts(reply.content)
    ctx = UpdateContext(
        federation,
        server_round,
        int(reply.metadata.run_id),
        str(reply.metadata.reply_to_message_id),
    )
    digest = update_digest(ctx, str(record.get("signer_id", "")), arrays, metrics)
    return verify_update(record, digest, trusted)


def _secure_settings(run: Any) -> SecureSettings | None:
    if not bool(run.get("secure-aggregation", False)):
        return None
    return SecureSettings(
        reconstruction_threshold=float(run["secagg-threshold"]),
        max_weight=float(run["secagg-max-weight"]),
        clipping_range=float(run["secagg-clipping-range"]),
        timeout=float(run["round-timeout"]),
    )


def _noise(run: Any, events: list[dict[str, Any]]) -> CentralNoise | None:
    multiplier = float(run.get("dp-noise-multiplier", 0.0))
    if multiplier <= 0:
        return None
    clip = float(run["dp-clip"])
    adaptive = None
    if bool(run.get("dp-adaptive", False)):
        # A resumed run goes on from the clip its last round moved to.
        moved = [e["privacy"]["next_clip"] for e in events if "next_clip" in e.get("privacy", {})]
        adaptive = AdaptiveClip.start(
            float(moved[-1]) if moved else clip, multiplier, int(run["min-members"])
        )
    return CentralNoise(multiplier, clip, float(run["dp-delta"]), adaptive)


def _digest(arrays: ArrayRecord) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in sorted(arrays.keys()):
        h.update(name.encode() + arrays[name].data)
    return h.hexdigest()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    folder = Path(str(run["federation-dir"]))
    journal = _Journal(folder / "progress.jsonl")
    trusted = {
        k: bytes.fromhex(v) if v else b"" for k, v in json.loads(str(run["members"])).items()
    }

    def follow_trust() -> None:
        # `fed host` lists the peers the node trusts now (a peer trusted after the start
        # included); the strategy's checks hold this very dict.
        path = folder / "trusted.json"
        if path.exists():
            trusted.update(dict.fromkeys(json.loads(path.read_text()), b""))

    lora = bool(run["lora"])
    # [training] trainable = "head": only the head travels (and is clipped and noised).
    head_only = str(run.get("trainable", "all")) == "head"
    spec = spec_from_json(str(run["model-spec"]))
    loaded = build_model(
        spec, int(run["num-labels"]), int(run["lora-rank"]) if lora else None, int(run["seed"])
    )
    initial = get_weights(loaded.model, lora, head_only)
    min_members = int(run["min-members"])
    rounds = int(run["rounds"])
    base = STRATEGIES[str(run["strategy"])]
    resumed = load_checkpoint(folder)
    events: list[dict[str, Any]] = resumed.events if resumed else []
    noise = _noise(run, events)

    # `fed host` records each trusted peer's Flower node id as it registers the peer.
    def member_of(flower_id: int) -> str:
        return member_id(folder, flower_id)

    strategy = verifying(base, str(run["federation"]), trusted, member_of)(
        # DP-FedAvg weighs every member alike (each member sends dp-weight 1).
        weighted_by_key="dp-weight" if noise else "num-examples",
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_train_nodes=min_members,
        min_evaluate_nodes=min_members,
        min_available_nodes=min_members,
    )
    for event in events:
        if event["event"] == "round":
            strategy.accepted_by_round[int(event["round"])] = list(event["accepted"])
    journal.write(
        event="start",
        rounds=rounds,
        payload_bytes=sum(len(a.data) for a in initial.values()),
        parameters=sum(p.numel() for p in loaded.model.parameters()),
        resumed_after=resumed.round if resumed else 0,
    )

    def on_round(server_round: int, arrays: ArrayRecord, event: dict[str, Any]) -> None:
        events.append(event)
        save_checkpoint(folder, server_round, arrays, events)
        journal.write(**event)

    loop = RoundLoop(
        strategy,
        grid,
        min_members,
        float(run["round-timeout"]),
        ConfigRecord({"federation": str(run["federation"])}),
        on_round,
        lambda line: log.warning("%s", line),
        secure=_secure_settings(run),
        check_secure=lambda reply, r: _verify(
            reply, str(run["federation"]), r, trusted, secure_parts
        ),
        noise=noise,
        before_round=follow_trust,
        member_of=member_of,
    )
    started = time.time()
    if resumed is None:
        # `fed host` reads this to tell "no one came" apart from "round 0 is slow".
        journal.write(event="members", online=loop.wait_for_members(patient=True))
        # Round 0: where the federation starts, on every member's evaluation set.
        baseline = {"event": "baseline", "round": 0, **loop.evaluate(0, initial, patient=True)}
        events.append(baseline)
        journal.write(**baseline)
        arrays = loop.run(initial, 1, rounds)
    else:
        arrays = loop.run(resumed.arrays, resumed.round + 1, rounds)
    # The global model is on disk before result.json appears: `fed host` keeps it as an
    # artifact as soon as it reads the result.
    set_weights(loaded.model, arrays, lora, head_only)
    save_trained(
        TrainedModel(loaded.model, loaded.tokenizer, "lora" if lora else "full"), folder / MODEL_DIR
    )
    partial = folder / "result.json.partial"
    partial.write_text(
        json.dumps(
            {
                "model_dir": MODEL_DIR,
                "rounds": rounds,
                "seconds": time.time() - started,
                "resumed_after": resumed.round if resumed else 0,
                "secure_aggregation": bool(run.get("secure-aggregation", False)),
                # What the released model cost, over every planned round (None: no DP).
                "privacy": {
                    "epsilon": noise.spent(rounds),
                    "delta": noise.delta,
                    "protected": PROTECTED,
                    "accountant": ACCOUNTANT,
                }
                if noise
                else None,
                "initial_digest": _digest(initial),
                "final_digest": _digest(arrays),
                "members": sorted({m for ms in strategy.accepted_by_round.values() for m in ms}),
                # Per round: the members' train loss, and the global model's evaluation
                # (weighted over the members' evaluation sets): the published curve.
                "train_metrics": {
                    str(e["round"]): _round_metrics(e) for e in events if e["event"] == "round"
                },
            }
        )
    )
    partial.replace(folder / "result.json")
