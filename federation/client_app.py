"""The ClientApp a member's SuperNode runs: train or evaluate on private data, sign, reply.

Runs on the member's machine, in a process its SuperNode starts. It reads the member's
node home and pipeline from the SuperNode's --node-config (never from the host), loads the
host's weights, and either fine-tunes on the member's private data and replies with its
weights (the LoRA adapters, or the head alone under the study's `[training] trainable =
"head"`, trained as a local trial would be) and coarse metrics, or evaluates the global
weights on its private evaluation set and replies with loss, accuracy, the number of
examples and the accuracy of always predicting its most common label (so the host can tell
a model that learnt nothing). Every reply is signed by the member's node key (the outermost mod).
Its data, texts and label names never enter a reply.

When the host runs secure aggregation, train messages are SecAgg+ stages: Flower's
secaggplus_mod answers them, and its collect stage masks the update this ClientApp trains
(sent as a legacy FitRes, which is what the mod reads); only the masked integer vector
leaves the member, and the signing mod signs every stage's reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from gridpoint.federation.model_state import build_model, get_weights, set_weights, spec_from_json
from gridpoint.federation.update_signing import (
    SIGNATURE_RECORD,
    UpdateContext,
    config_int,
    secure_parts,
    sign_update,
    update_digest,
    update_parts,
)
from gridpoint.node.home import NodeHome

__all__ = ["app"]


def _member_study(context: Context) -> Any:
    """The study this member trains by: the host's model, seed and [training] trainable, the
    member's own pipeline. The federation's LoRA is the run's ("lora", applied by
    build_model), never the study file's: model.lora is off here so trainers add none."""
    from dataclasses import replace

    from gridpoint.trainers.study_config import TRAINABLE, PrunerSpec, StudyConfig

    node = context.node_config
    run = context.run_config
    folder = Path(str(node["pipeline-dir"]))
    # A host from before `trainable` was sent trains every weight.
    trainable = str(run.get("trainable", "all"))
    if trainable not in TRAINABLE or (trainable == "head" and bool(run["lora"])):
        raise ValueError(f"the host asks to train {trainable!r} weights")
    model = spec_from_json(str(run["model-spec"]), str(node.get("model-path", "")))
    return StudyConfig(
        path=folder / "federation.toml",
        pipeline=str(node["pipeline"]),
        name=str(run["federation"]),
        task="text-classification",
        language="",
        trials=1,
        seed=int(run["seed"]),
        model=replace(model, lora=False),
        objective_metric="accuracy",
        objective_direction="maximize",
        eval_interval=10**9,
        search_space=(),
        pruner=PrunerSpec(type="none"),
        text_column=str(node.get("text-column", "text")),
        label_column=str(node.get("label-column", "label")),
        trainable=trainable,
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
    """Outermost mod: signs the reply's arrays and metrics with the member's node key.

    A SecAgg+ stage's reply is signed whole (secure_parts), bound to the round the
    workflow groups its messages by.
    """
    secure = RECORD_KEY_CONFIGS in msg.content.config_records
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    home = NodeHome(Path(str(context.node_config["gridpoint-home"])))
    ctx = UpdateContext(
        federation=str(context.run_config["federation"]),
        server_round=(
            int(msg.metadata.group_id)
            if secure
            else config_int(msg.content.config_records["config"], "server-round")
        ),
        run_id=int(msg.metadata.run_id),
        reply_to=str(msg.metadata.message_id),
    )
    arrays, metrics = secure_parts(reply.content) if secure else update_parts(reply.content)
    digest = update_digest(ctx, home.identity.node_id, arrays, metrics)
    reply.content[SIGNATURE_RECORD] = sign_update(home.identity, digest)
    return reply


def secure_aggregation_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's secaggplus_mod for SecAgg+ stage messages; other messages pass through."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


app = ClientApp()


@app.train(mods=[sign_reply_mod, secure_aggregation_mod])
def train(msg: Message, context: Context) -> Message:
    try:
        if "fitins.parameters" in msg.content.array_records:
            return _train_secure(msg, context)
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


def _prepare(arrays: ArrayRecord, context: Context) -> tuple[Any, Any, Any, Any]:
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
    set_weights(loaded.model, arrays, lora, study.trainable == "head")
    return study, train_data, eval_data, loaded


def _settings(context: Context, study: Any, server_round: int) -> Any:
    """The round's fine-tuning settings, made as a local trial's are (head-only included)."""
    from gridpoint.trainers.study import trial_settings

    run = context.run_config
    params = {
        "learning_rate": float(run["learning-rate"]),
        "batch_size": int(run["batch-size"]),
        "epochs": int(run["local-epochs"]),
        "warmup_ratio": 0.0,
        "weight_decay": float(run["weight-decay"]),
    }
    return trial_settings(study, params, study.seed + server_round, "auto")


def _evaluate(msg: Message, context: Context) -> Message:
    from collections import Counter

    from gridpoint.trainers.finetune import evaluate as evaluate_model

    study, _, eval_data, loaded = _prepare(msg.content.array_records["arrays"], context)
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
    if float(context.run_config.get("dp-clip", 0.0)) > 0:
        # The host weighs by dp-weight under DP-FedAvg; evaluation stays weighted by size.
        metrics["dp-weight"] = metrics["num-examples"]
    _write_status(
        context, server_round, int(context.run_config["rounds"]), {"phase": "evaluate", **metrics}
    )
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


def _train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records["config"]
    # With --dp-adaptive-clip the round's clip comes with the round.
    clip = config.get("dp-clip")
    arrays, metrics = _fit(
        msg.content.array_records["arrays"],
        config_int(config, "server-round"),
        context,
        float(cast(float, clip)) if clip is not None else None,
    )
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def _train_secure(msg: Message, context: Context) -> Message:
    """The SecAgg+ collect stage's training: the update as the FitRes secaggplus_mod masks."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins

    fitins = recorddict_to_fitins(msg.content, keep_input=True)
    keys = [str(k) for k in json.loads(str(fitins.config["array-keys"]))]
    arrays = ArrayRecord(
        {k: Array(a) for k, a in zip(keys, parameters_to_ndarrays(fitins.parameters), strict=True)}
    )
    weights, metrics = _fit(arrays, int(str(fitins.config["server-round"])), context)
    # The weight SecAgg+ multiplies the update by: its examples, or 1 under DP-FedAvg.
    examples = float(cast(float, metrics.get("dp-weight", metrics["num-examples"])))
    vectors = [weights[k].numpy() for k in keys]
    run = context.run_config
    # SecAgg+ clips every weight times (examples / max weight) to +-clipping range before it
    # quantizes: a weight beyond that would be summed wrong without a word; refuse instead.
    scale = examples / float(run["secagg-max-weight"])
    largest = max((float(abs(v).max()) for v in vectors if v.size), default=0.0)
    if scale > 1 or largest * scale > float(run["secagg-clipping-range"]):
        raise ValueError("update outside the secure aggregation's clipping range")
    fitres = FitRes(
        Status(Code.OK, ""),
        ndarrays_to_parameters(vectors),
        int(examples),
        {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
    )
    return Message(content=fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


def _fit(
    arrays: ArrayRecord, server_round: int, context: Context, round_clip: float | None = None
) -> tuple[ArrayRecord, dict[str, int | float | list[int] | list[float]]]:
    """Fine-tunes the host's weights on this member's data: (its weights, coarse metrics).

    round_clip: the round's clip under adaptive clipping (else the run's --dp-clip).
    """
    from gridpoint.trainers.finetune import finetune

    run = context.run_config
    study, train_data, eval_data, loaded = _prepare(arrays, context)
    lora = bool(run["lora"])
    settings = _settings(context, study, server_round)
    result = finetune(loaded, train_data, eval_data, settings)
    metrics: dict[str, int | float | list[int] | list[float]] = {
        "num-examples": float(len(train_data)),
        "train_loss": result.metrics["train_loss"],
        "accuracy": result.metrics["accuracy"],
        "eval_loss": result.metrics["eval_loss"],
    }
    _write_status(context, server_round, int(run["rounds"]), metrics)
    weights = get_weights(loaded.model, lora, study.trainable == "head")
    clip = round_clip if round_clip is not None else float(run.get("dp-clip", 0.0))
    if clip > 0:
        from gridpoint.federation.privacy import clip_update, within_clip

        if round_clip is not None:
            # The host moves the next round's clip by the (noisy) count of these answers.
            metrics["dp-within-clip"] = float(within_clip(weights, arrays, clip))
        # DP-FedAvg: this member's update clipped, and weighted like every other member's.
        weights = clip_update(weights, arrays, clip)
        metrics["dp-weight"] = 1.0
    return weights, metrics
