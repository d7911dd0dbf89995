"""The ServerApp the host's SuperLink runs: verify every update, aggregate, record the run.

Training starts once --min-members members are online; each later round goes on with the
members still online, waiting at most --round-timeout for their replies, so a member
that disappears costs one timeout, never the federation.

Updates are checked before aggregation (the outermost step): signed by a trusted peer of
the host, over exactly the bytes received, for this federation, round and run. Refused
updates are left out with a log line naming the node and reason; the round goes on with
the others. Progress, the final result and the final global model (a from_pretrained
folder) go to the host's federation folder, which `fed host` reads to report, publish and
keep the model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdam, FedAvg, FedYogi

from gridpoint.errors import GridpointError
from gridpoint.federation.model_state import build_model, get_weights, set_weights, spec_from_json
from gridpoint.federation.update_signing import (
    SIGNATURE_RECORD,
    UpdateContext,
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


def verifying(base: type, federation: str, trusted: dict[str, bytes], journal: _Journal) -> Any:
    """A subclass of the strategy `base` whose aggregate_train first drops unverified replies."""

    # The strategy class is chosen at run time, so the checker cannot see the base.
    class Verifying(base):  # type: ignore[misc]
        accepted_by_round: dict[int, list[str]] = {}  # noqa: RUF012

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Grid) -> Any:
            messages = super().configure_train(server_round, arrays, config, grid)
            # --min-members gates the start; later rounds go on with whoever is online
            # (Flower would otherwise wait forever for a member that died).
            self.min_available_nodes = 1
            self.min_train_nodes = 1
            return messages

        def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> Any:
            kept, accepted, refused = [], [], []
            # Each member's own metrics, as it signed them (the UI draws them per member).
            member_metrics: dict[str, dict[str, float]] = {}
            for reply in replies:
                if reply.has_error():
                    refused.append(
                        {
                            "node": str(reply.metadata.src_node_id),
                            "reason": "member failed: " + str(reply.error.reason)[:200],
                        }
                    )
                    continue
                try:
                    signer = _verify(reply, federation, server_round, trusted)
                except (GridpointError, KeyError, TypeError) as exc:
                    reason = str(exc) if isinstance(exc, GridpointError) else "update is not signed"
                    refused.append({"node": _claimed(reply), "reason": reason})
                    log.warning(
                        "update refused: round %s node %s: %s",
                        server_round,
                        _claimed(reply),
                        reason,
                    )
                    continue
                kept.append(reply)
                accepted.append(signer)
                member_metrics[signer] = update_parts(reply.content)[1]
            self.accepted_by_round[server_round] = accepted
            arrays, metrics = super().aggregate_train(server_round, kept)
            journal.write(
                event="round",
                round=server_round,
                accepted=accepted,
                refused=refused,
                metrics=dict(metrics) if metrics is not None else {},
                member_metrics=member_metrics,
                payload_bytes=[_payload_bytes(r) for r in kept],
            )
            return arrays, metrics

    return Verifying


def _claimed(reply: Message) -> str:
    try:
        return str(reply.content[SIGNATURE_RECORD]["signer_id"])
    except KeyError:
        return f"flower-node-{reply.metadata.src_node_id}"


def _payload_bytes(reply: Message) -> int:
    return sum(len(a.data) for a in reply.content.array_records["arrays"].values())


def _verify(reply: Message, federation: str, server_round: int, trusted: dict[str, bytes]) -> str:
    record = dict(reply.content.config_records[SIGNATURE_RECORD])
    arrays, metrics = update_parts(reply.content)
    ctx = UpdateContext(
        federation,
        server_round,
        int(reply.metadata.run_id),
        str(reply.metadata.reply_to_message_id),
    )
    digest = update_digest(ctx, str(record.get("signer_id", "")), arrays, metrics)
    return verify_update(record, digest, trusted)


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
    lora = bool(run["lora"])
    spec = spec_from_json(str(run["model-spec"]))
    loaded = build_model(
        spec, int(run["num-labels"]), int(run["lora-rank"]) if lora else None, int(run["seed"])
    )
    initial = get_weights(loaded.model, lora)
    min_members = int(run["min-members"])
    base = STRATEGIES[str(run["strategy"])]
    strategy = verifying(base, str(run["federation"]), trusted, journal)(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=min_members,
        min_available_nodes=min_members,
    )
    journal.write(
        event="start",
        rounds=int(run["rounds"]),
        payload_bytes=sum(len(a.data) for a in initial.values()),
        parameters=sum(p.numel() for p in loaded.model.parameters()),
    )
    started = time.time()
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(run["rounds"]),
        timeout=float(run["round-timeout"]),
        train_config=ConfigRecord({"federation": str(run["federation"])}),
    )
    final = result.arrays
    # The global model is on disk before result.json appears: `fed host` keeps it as an
    # artifact as soon as it reads the result.
    set_weights(loaded.model, final, lora)
    save_trained(
        TrainedModel(loaded.model, loaded.tokenizer, "lora" if lora else "full"), folder / MODEL_DIR
    )
    partial = folder / "result.json.partial"
    partial.write_text(
        json.dumps(
            {
                "model_dir": MODEL_DIR,
                "rounds": int(run["rounds"]),
                "seconds": time.time() - started,
                "initial_digest": _digest(initial),
                "final_digest": _digest(final),
                "members": sorted({m for ms in strategy.accepted_by_round.values() for m in ms}),
                "train_metrics": {
                    str(k): dict(v) for k, v in result.train_metrics_clientapp.items()
                },
            }
        )
    )
    partial.replace(folder / "result.json")
