"""The ClientApp a member's SuperNode runs: train or evaluate on private data, sign, reply.

Runs on the member's machine, in a process its SuperNode starts. It reads the member's
node home and pipeline from the SuperNode's --node-config (never from the host), loads the
host's weights, and either fine-tunes on the member's private data and replies with its
weights (or LoRA adapters) and coarse metrics, or evaluates the global weights on its
private evaluation set and replies with loss, accuracy, the number of examples and the
accuracy of always predicting its most common label (so the host can tell a model that
learnt nothing). Every reply is signed by the member's node key (the outermost mod).
Its data, texts and label names never enter a reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

from gridpoint.federation.model_state import build_model, get_weights, set_weights, spec_from_json
from gridpoint.federation.update_signing import (
    SIGNATURE_RECORD,
    UpdateContext,
    config_int,
    sign_update,
    update_digest,
    update_parts,
)
from gridpoint.node.home import NodeHome

__all__ = ["app"]


def _member_study(context: Context) -> Any:
    from gridpoint.trainers.study_config import PrunerSpec, StudyConfig

    node = context.node_config
    run = context.run_config
    folder = Path(str(node["pipeline-dir"]))
    return StudyConfig(
        path=folder / "federation.toml",
        pipeline=str(node["pipeline"]),
        name=str(run["federation"]),
        task="text-classification",
        language="",
        trials=1,
        seed=int(run["seed"]),
        model=spec_from_json(str(run["model-spec"]), str(node.get("model-path", ""))),
        objective_metric="accuracy",
        objective_direction="maximize",
        eval_interval=10**9,
        search_space=(),
        pruner=PrunerSpec(type="none"),
        text_column=str(node.get("text-column", "text")),
        label_column=str(node.get("label-column", "label")),
    )


def _write_status(
    context: Context, server_round: int, total: int, metrics: Mapping[str, object]
) -> None:
    path = context.node_config.get("status-file")
    if path:
        line = json.dumps({"round": server_round, "rounds": total, **metrics})
        with open(str(path), "a") as f:
            f.write(line + "\n")


def sign_reply_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Outermost mod: signs the reply's arrays and metrics with the member's node key."""
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    home = NodeHome(Path(str(context.node_config["gridpoint-home"])))
    config = msg.content.config_records["config"]
    ctx = UpdateContext(
        federation=str(context.run_config["federation"]),
        server_round=config_int(config, "server-round"),
        run_id=int(msg.metadata.run_id),
        reply_to=str(msg.metadata.message_id),
    )
    arrays, metrics = update_parts(reply.content)
    digest = update_digest(ctx, home.identity.node_id, arrays, metrics)
    reply.content[SIGNATURE_RECORD] = sign_update(home.identity, digest)
    return reply


app = ClientApp()


@app.train(mods=[sign_reply_mod])
def train(msg: Message, context: Context) -> Message:
    try:
        return _train(msg, context)
    except Exception as exc:
        # Flower sends an error's text to the host: only its kind leaves this node.
        raise RuntimeError(f"training failed on this member ({exc.__class__.__name__})") from None


@app.evaluate(mods=[sign_reply_mod])
def evaluate(msg: Message, context: Context) -> Message:
    try:
        return _evaluate(msg, context)
    except Exception as exc:
        raise RuntimeError(f"evaluation failed on this member ({exc.__class__.__name__})") from None


def _prepare(msg: Message, context: Context) -> tuple[Any, Any, Any, Any]:
    """(study, train data, eval data, model holding the host's weights) on this member."""
    from gridpoint.trainers.pipeline import load_data

    run = context.run_config
    joined = str(context.node_config.get("federation", ""))
    if joined != str(run["federation"]):
        # The member joined another federation than the one this run belongs to.
        raise ValueError(f"this member joined {joined!r}, not {run['federation']!r}")
    study = _member_study(context)
    train_data, eval_data = load_data(study)
    num_labels = int(run["num-labels"])
    if len(train_data.label_names) != num_labels:
        raise ValueError(
            f"this member's data has {len(train_data.label_names)} labels, the federation {num_labels}"
        )
    lora = bool(run["lora"])
    loaded = build_model(
        study.model, num_labels, int(run["lora-rank"]) if lora else None, study.seed
    )
    set_weights(loaded.model, msg.content.array_records["arrays"], lora)
    return study, train_data, eval_data, loaded


def _settings(context: Context, study: Any, server_round: int) -> Any:
    from gridpoint.trainers.finetune import FineTuneSettings

    run = context.run_config
    return FineTuneSettings(
        learning_rate=float(run["learning-rate"]),
        batch_size=int(run["batch-size"]),
        epochs=int(run["local-epochs"]),
        warmup_ratio=0.0,
        weight_decay=float(run["weight-decay"]),
        eval_interval=10**9,
        max_length=study.model.max_length,
        seed=study.seed + server_round,
    )


def _evaluate(msg: Message, context: Context) -> Message:
    from collections import Counter

    from gridpoint.trainers.finetune import evaluate as evaluate_model

    study, _, eval_data, loaded = _prepare(msg, context)
    server_round = config_int(msg.content.config_records["config"], "server-round")
    scores = evaluate_model(loaded, eval_data, _settings(context, study, server_round))
    counts = Counter(eval_data.labels)
    metrics: dict[str, int | float | list[int] | list[float]] = {
        "num-examples": float(len(eval_data)),
        "eval_loss": scores["eval_loss"],
        "accuracy": scores["accuracy"],
        # What always answering this member's most common label scores here.
        "constant_accuracy": max(counts.values()) / max(len(eval_data), 1),
    }
    _write_status(
        context, server_round, int(context.run_config["rounds"]), {"phase": "evaluate", **metrics}
    )
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


def _train(msg: Message, context: Context) -> Message:
    from gridpoint.trainers.finetune import finetune

    run = context.run_config
    study, train_data, eval_data, loaded = _prepare(msg, context)
    lora = bool(run["lora"])
    config = msg.content.config_records["config"]
    settings = _settings(context, study, config_int(config, "server-round"))
    result = finetune(loaded, train_data, eval_data, settings)
    metrics: dict[str, int | float | list[int] | list[float]] = {
        "num-examples": float(len(train_data)),
        "train_loss": result.metrics["train_loss"],
        "accuracy": result.metrics["accuracy"],
        "eval_loss": result.metrics["eval_loss"],
    }
    _write_status(context, config_int(config, "server-round"), int(run["rounds"]), metrics)
    content = RecordDict(
        {"arrays": get_weights(loaded.model, lora), "metrics": MetricRecord(metrics)}
    )
    return Message(content=content, reply_to=msg)
