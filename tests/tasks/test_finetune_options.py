"""The loop's options: gradient accumulation, gradient checkpointing, length-grouped batches,
head-only training."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from gridpoint.errors import TrainerError
from gridpoint.trainers.batching import length_grouped_batches
from gridpoint.trainers.finetune import FineTuneSettings, finetune, freeze_base
from gridpoint.trainers.models import load_model
from gridpoint.trainers.study_config import ModelSpec
from gridpoint.trainers.tasks import task_type

BERT = {
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "vocab_size": 100,
}
WORDS = ["good", "fine", "great", "bad", "awful", "poor", "the", "movie", "was", "very"]
PAIRS = [
    (" ".join(WORDS[(i * 7 + j) % 10] for j in range(2 + i % 6)), str(i % 2)) for i in range(40)
]
SETTINGS = FineTuneSettings(1e-2, 4, 1, 0.0, 0.0, 5, 16, 0)


def _run(settings: FineTuneSettings):  # type: ignore[no-untyped-def]
    kind = task_type("text-classification")
    train, evaluation = kind.prepare(PAIRS, PAIRS[:8])
    loaded = load_model(ModelSpec(config=BERT), 2, train.texts, 0)
    return finetune(copy.deepcopy(loaded), train, evaluation, settings)


def test_gradient_accumulation_takes_one_step_per_group_of_micro_batches() -> None:
    plain, accumulated = _run(SETTINGS), _run(replace(SETTINGS, gradient_accumulation=3))
    assert plain.steps == 10 and accumulated.steps == 4  # 10 micro-batches of 4
    assert plain.samples_seen == accumulated.samples_seen == 40


def test_gradient_checkpointing_trains_the_same_model() -> None:
    plain, checkpointed = _run(SETTINGS), _run(replace(SETTINGS, gradient_checkpointing=True))
    assert [p.step for p in plain.curve] == [p.step for p in checkpointed.curve]
    for a, b in zip(plain.curve, checkpointed.curve, strict=True):
        assert abs(a.value - b.value) < 1e-4, (a, b)


def test_batches_cover_every_example_once_with_lengths_grouped() -> None:
    lengths = [i % 17 for i in range(500)]
    batches = length_grouped_batches(lengths, 10, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(500))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread < len(batches) * 4  # shuffled batches would spread over most of 0..16
    assert batches == length_grouped_batches(lengths, 10, seed=3)


def test_head_only_training_moves_the_head_and_nothing_else() -> None:
    # Prepare: a tiny model and its weights as loaded.
    kind = task_type("text-classification")
    train, evaluation = kind.prepare(PAIRS, PAIRS[:8])
    loaded = load_model(ModelSpec(config=BERT), 2, train.texts, 0)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    # Execute
    result = finetune(loaded, train, evaluation, replace(SETTINGS, head_only=True))
    # Assert: only the classifier trained; the base stays frozen and out of training mode
    # (no dropout in the features the head learns from).
    model = loaded.model
    head = {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == head
    assert result.trainable_parameters == sum(p.numel() for p in model.classifier.parameters())
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("classifier."))
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])
    assert not model.base_model.training and model.classifier.training


def test_head_only_training_is_refused_where_there_is_no_head_of_its_own() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tied = LlamaForCausalLM(
        LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=16, vocab_size=20, tie_word_embeddings=True)
    )  # fmt: skip
    with pytest.raises(TrainerError, match="shares its weights with the base model"):
        freeze_base(tied)
    with pytest.raises(TrainerError, match="no head apart from its base model"):
        freeze_base(torch.nn.Linear(2, 2))
    with pytest.raises(TrainerError, match="exclude each other"):
        _run(replace(SETTINGS, head_only=True, lora_rank=4))
