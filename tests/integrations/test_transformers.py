"""Hugging Face Trainer: one run with the callback is one record with its curve; canaries stay home."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from gridpoint.integrations.transformers import GridpointCallback
from gridpoint.node.store.sql_store import open_store
from tests.helpers import MakeHome

pytestmark = pytest.mark.slow

CANARIES = ("zqcanarytext", "ZQCANARYLABEL", "ZQCANARYOUTDIR", "ZQCANARYSTUDY")


def _data(n: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    rows: dict[str, list[object]] = {"input_ids": [], "label": [], "text": []}
    for _ in range(n):
        label = rng.randrange(2)
        rows["input_ids"].append([label + 2] + [rng.randrange(4, 60) for _ in range(11)])
        rows["label"].append(label)
        rows["text"].append("zqcanarytext " * 6)
    features = Features(
        {
            "input_ids": Sequence(Value("int64")),
            "label": ClassLabel(names=["ZQCANARYLABEL_neg", "ZQCANARYLABEL_pos"]),
            "text": Value("string"),
        }
    )
    return Dataset.from_dict(rows, features=features)


def test_a_trainer_run_becomes_one_record_with_its_curve_and_no_canary(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: a tiny model from a config, data with canaries, an output folder named by one.
    home = make_home("A")
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)  # type: ignore[call-arg]  # fmt: skip
    args = TrainingArguments(
        output_dir=str(tmp_path / "ZQCANARYOUTDIR"),
        per_device_train_batch_size=16,
        num_train_epochs=2,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=4,
        logging_steps=2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        metric_for_best_model="accuracy",
    )
    train = _data(96, 1)
    callback = GridpointCallback(
        home=home.path, task="text-classification", study="ZQCANARYSTUDY", language="en",
        train_dataset=train,
    )  # fmt: skip
    trainer = Trainer(
        model=BertForSequenceClassification(config),
        args=args,
        train_dataset=train,
        eval_dataset=_data(32, 2),
        compute_metrics=lambda p: {
            "accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())  # type: ignore[union-attr]
        },
        callbacks=[callback],
    )
    # Execute
    trainer.train()
    # Assert: one record, its curve the evaluations and training losses, its task measured.
    store = open_store(home.db_url())
    [stored] = store.query(None, limit=10)
    [private] = store.list_private_runs()
    store.close()
    record = stored.record
    evaluations = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    assert [(p.step, p.value) for p in record.curve if p.metric == "accuracy"] == [
        (h["step"], h["eval_accuracy"]) for h in evaluations
    ]
    assert any(p.metric == "train_loss" for p in record.curve)
    assert record.hyperparameters == {"learning_rate": 1e-3, "batch_size": 16, "epochs": 2,
                                      "warmup_ratio": 0.0, "weight_decay": 0.0}  # fmt: skip
    assert record.metrics["accuracy"] == evaluations[-1]["eval_accuracy"]
    assert (record.objective_metric, record.objective_direction) == ("accuracy", "maximize")
    assert (record.task.num_labels, record.task.size_bucket) == (2, "<1k")
    assert record.task.text_length_bucket == "<32" and record.model.family == "bert"
    for canary in CANARIES:
        assert canary.lower().encode() not in stored.envelope.lower(), canary
    # The canaries did reach the private record, so the check above could have failed.
    assert (
        "ZQCANARYOUTDIR" in private.detail.extra["output_dir"]
        and private.study_name == "ZQCANARYSTUDY"
    )


# TRL's SFTConfig still sets the TrainingArguments field transformers 5 renamed.
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing.*is deprecated:FutureWarning")
def test_trl_sft_trainer_runs_with_the_callback_and_publishes_one_record(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: TRL's SFTTrainer (a Trainer subclass) on a tiny causal LM with prompt/completion
    # pairs; the prompts carry a canary.
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer  # type: ignore[attr-defined]

    from gridpoint.trainers.word_tokenizer import data_free_tokenizer

    home = make_home("A")
    tokenizer = data_free_tokenizer()
    rows = [
        {"prompt": f"zqcanaryprompt {i} plus one:", "completion": f" {i + 1}"} for i in range(64)
    ]
    model = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                    max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_train_epochs=2,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=3,
        logging_steps=2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        max_length=48,
    )
    train = Dataset.from_list(rows[:48])
    callback = GridpointCallback(home=home.path, task="causal-lm", study="sft", language="en")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=Dataset.from_list(rows[48:]),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    # Execute
    trainer.train()
    # Assert: one causal-lm record whose eval_loss curve is the SFT run's evaluations.
    store = open_store(home.db_url())
    [stored] = store.query(None, limit=10)
    store.close()
    record = stored.record
    evaluations = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert (record.task.type, record.objective_metric) == ("causal-lm", "eval_loss")
    assert [(p.step, p.value) for p in record.curve if p.metric == "eval_loss"] == [
        (h["step"], h["eval_loss"]) for h in evaluations
    ]
    assert b"zqcanaryprompt" not in stored.envelope.lower()
