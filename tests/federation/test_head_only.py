"""A federation of a study whose `[training] trainable = "head"`: members train the head alone.

In-process: the run config is the one `fed host` submits (host.run_config), the member is the
real ClientApp (training on a tiny pipeline, signing its reply) handed one train message as a
SuperLink would deliver it; the host's starting weights are made as the ServerApp makes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from gridpoint.errors import ConfigError
from gridpoint.federation.client_app import app as member_app
from gridpoint.federation.host import HostOptions, run_config, run_host
from gridpoint.federation.model_state import build_model, get_weights, set_weights
from gridpoint.federation.privacy import clip_update
from gridpoint.node.home import NodeHome
from gridpoint.trainers.finetune import finetune
from gridpoint.trainers.pipeline import load_data
from gridpoint.trainers.study import trial_settings
from gridpoint.trainers.study_config import StudyConfig, load_study_config
from tests.federation.loopback import deliver
from tests.helpers import MakeHome

PIPELINE = """
import random

def load():
    rng = random.Random(1)
    rows = []
    for i in range(48):
        good = i % 2 == 0
        words = rng.choices("the a movie was really quite it".split(), k=4)
        words.insert(rng.randrange(5), "great" if good else "awful")
        rows.append((" ".join(words), "pos" if good else "neg"))
    return rows[:32], rows[32:]
"""

STUDY = """
pipeline = "reviews:load"
name = "reviews"
task = "text-classification"

[model]
max_length = 16
config = { model_type = "bert", hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 32, max_position_embeddings = 32, vocab_size = 100 }

[training]
trainable = "head"

[search_space]
learning_rate = { type = "float", low = 1e-3, high = 1e-1, log = true }
"""

HEAD = {"classifier.weight", "classifier.bias"}
PARAMS = {"learning_rate": 0.05, "batch_size": 16, "epochs": 1, "weight_decay": 0.0}


def _study(folder: Path, trainable: str = "head") -> StudyConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reviews.py").write_text(PIPELINE)
    path = folder / "study.toml"
    path.write_text(STUDY.replace('"head"', f'"{trainable}"'))
    return load_study_config(path)


def _opts(folder: Path, **changes: Any) -> HostOptions:
    fields: dict[str, Any] = {
        "federation": "heads",
        "study": folder / "study.toml",
        "rounds": 1,
        "min_members": 1,
        "listen": "127.0.0.1:0",
        "lora": False,
        "strategy": "fedavg",
        "round_timeout": 30.0,
        "params": {},
        "db": None,
    }
    return HostOptions(**fields | changes)


def _train_once(
    member: NodeHome, folder: Path, settings: dict[str, Any], arrays: ArrayRecord
) -> ArrayRecord:
    """The member's reply to round 1, its ClientApp run on what the host submitted."""
    context = Context(
        run_id=5,
        node_id=1,
        node_config={
            "gridpoint-home": str(member.path),
            "pipeline": "reviews:load",
            "pipeline-dir": str(folder),
            "federation": "heads",
        },
        state=RecordDict(),
        run_config=settings,
    )
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 5, 0
    msg = Message(
        RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1})}),
        dst_node_id=1,
        message_type="train",
    )
    reply = deliver(member_app, context, msg, 1)
    assert not reply.has_error(), reply.error
    arrays = reply.content.array_records["arrays"]
    assert isinstance(arrays, ArrayRecord)
    return arrays


def _local_head(study: StudyConfig, initial: ArrayRecord) -> ArrayRecord:
    """The head that `tune`'s code trains for round 1's settings, from the host's weights."""
    loaded = build_model(study.model, 2, None, study.seed)
    set_weights(loaded.model, initial, lora=False, head_only=True)
    train, evaluation = load_data(study)
    settings = trial_settings(study, {**PARAMS, "warmup_ratio": 0.0}, study.seed + 1, "auto")
    finetune(loaded, train, evaluation, settings)
    head: ArrayRecord = get_weights(loaded.model, lora=False, head_only=True)
    return head


@pytest.mark.parametrize("dp", [False, True], ids=["plain", "dp"])
def test_a_member_trains_and_sends_only_the_head_when_the_hosts_study_says_head(
    make_home: MakeHome, tmp_path: Path, dp: bool
) -> None:
    # Prepare: what `fed host` submits for the study, and the ServerApp's starting weights.
    study = _study(tmp_path)
    clip = 0.01
    opts = _opts(tmp_path, dp=dp, dp_clip=clip)
    settings = run_config(opts, study, PARAMS, SimpleNamespace(num_labels=2), [], tmp_path, 1.0)
    server = build_model(study.model, 2, None, study.seed)
    initial = get_weights(server.model, lora=False, head_only=True)
    # Execute
    reply = _train_once(make_home("M"), tmp_path, settings, initial)
    # Assert: only the head came back, trained (and under DP-FedAvg, clipped to the clip)...
    assert set(initial.keys()) == set(reply.keys()) == HEAD
    update = [reply[k].numpy() - initial[k].numpy() for k in sorted(HEAD)]
    norm = math.sqrt(sum(float(np.sum(u.astype(np.float64) ** 2)) for u in update))
    assert norm > 0
    if dp:
        assert norm <= clip * (1 + 1e-5)
    # ...exactly the head a local head-only trial of the study trains from the same weights.
    local = _local_head(study, initial)
    expected = clip_update(local, initial, clip) if dp else local
    for k in HEAD:
        np.testing.assert_allclose(reply[k].numpy(), expected[k].numpy(), rtol=1e-5, atol=1e-6)
    # The host takes the head into its model: the base it built is left as it was.
    base = {k: v.clone() for k, v in server.model.bert.state_dict().items()}
    set_weights(server.model, reply, lora=False, head_only=True)
    assert all(
        (server.model.bert.state_dict()[k] == v).all() for k, v in base.items()
    ) and np.array_equal(
        server.model.classifier.bias.detach().numpy(), reply["classifier.bias"].numpy()
    )


def test_a_member_of_an_all_weights_study_still_sends_every_weight(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    study = _study(tmp_path, trainable="all")
    settings = run_config(
        _opts(tmp_path), study, PARAMS, SimpleNamespace(num_labels=2), [], tmp_path
    )
    server = build_model(study.model, 2, None, study.seed)
    initial = get_weights(server.model, lora=False)
    # Execute
    reply = _train_once(make_home("M"), tmp_path, settings, initial)
    # Assert: the encoder trained too.
    assert set(reply.keys()) == set(initial.keys()) > HEAD
    name = "bert.encoder.layer.0.output.dense.weight"
    assert not np.array_equal(reply[name].numpy(), initial[name].numpy())


def test_head_weights_refuse_arrays_that_are_not_the_head(tmp_path: Path) -> None:
    study = _study(tmp_path)
    model = build_model(study.model, 2, None, study.seed).model
    with pytest.raises(ValueError, match="not this model's head"):
        set_weights(model, get_weights(model, lora=False), lora=False, head_only=True)


def test_fed_host_refuses_lora_for_a_head_only_study_before_it_starts(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    _study(tmp_path)
    home = make_home("H")
    said: list[str] = []
    # Execute
    with pytest.raises(ConfigError, match="--lora trains adapters .* trainable = 'head'"):
        run_host(home, _opts(tmp_path, lora=True), said.append)
    # Assert: nothing said, no federation folder made.
    assert said == [] and not (home.path / "fed").exists()


def test_a_head_only_federation_is_published_as_method_head(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: a finished federation of the head-only study, as `fed host` saw it.
    from gridpoint.federation.host import FederationResult, HostOutcome
    from gridpoint.federation.publish import publish_federation
    from gridpoint.node.store.sql_store import open_store
    from gridpoint.schema import TaskDescriptor

    _study(tmp_path)
    home = make_home("H")
    result = FederationResult(
        members=["b" * 40],
        train_metrics={1: {"accuracy": 0.6}},
        initial_digest="x",
        final_digest="y",
        model_dir=tmp_path,
    )
    task = TaskDescriptor("text-classification", num_labels=2, size_bucket="<1k")
    outcome = HostOutcome(
        run_id=3, params=dict(PARAMS), task=task, result=result, rounds=[], start={}
    )
    # Execute
    summary = publish_federation(home, _opts(tmp_path), outcome)
    # Assert
    store = open_store(home.db_url(None))
    try:
        [stored] = store.query(None, limit=10)
    finally:
        store.close()
    assert stored.id == summary.record_id and stored.record.model.method == "head"
