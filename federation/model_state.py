"""The model a federation trains, built the same way by the host and every member.

Config-built models use a tokenizer over a public WordPiece vocabulary, so that no vocabulary
learnt from anyone's private text is needed or shipped (a byte-level one left a small model at
chance: it must first learn to spell); local checkpoints bring their own tokenizer.
Weights travel as Flower ArrayRecords: the full state dict, only the LoRA adapters, or only
the task's head (`[training] trainable = "head"`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gridpoint.trainers.finetune import head_names
from gridpoint.trainers.models import LoadedModel, load_model
from gridpoint.trainers.study_config import ModelSpec
from gridpoint.trainers.word_tokenizer import public_vocabulary_tokenizer

__all__ = ["build_model", "get_weights", "set_weights", "spec_from_json", "spec_to_json"]


def spec_to_json(spec: ModelSpec) -> str:
    data = asdict(spec)
    data["path"] = str(spec.path) if spec.path else ""
    return json.dumps(data, sort_keys=True)


def spec_from_json(text: str, local_path: str = "") -> ModelSpec:
    """The host's model spec; a member may point `path` at its own copy of the checkpoint."""
    data = json.loads(text)
    path = local_path or data.pop("path") or None
    data.pop("path", None)
    return ModelSpec(path=Path(path) if path else None, **data)


def build_model(spec: ModelSpec, num_labels: int, lora_rank: int | None, seed: int) -> LoadedModel:
    """Same architecture and (for config-built models) same initial weights on every side."""
    if spec.config:
        loaded = load_model(spec, num_labels, [], seed, tokenizer=public_vocabulary_tokenizer())
    else:
        loaded = load_model(spec, num_labels, [], seed)
    if lora_rank:
        from peft import LoraConfig, TaskType, get_peft_model

        loaded.model = get_peft_model(
            loaded.model,
            LoraConfig(
                task_type=TaskType.SEQ_CLS, r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0
            ),
        )
    return loaded


def get_weights(model: Any, lora: bool, head_only: bool = False) -> Any:
    """The ArrayRecord to exchange: LoRA adapter (and head) tensors only, the task's head
    only (head_only: the frozen base is the same on every side, and DP-FedAvg's clipping and
    noise then touch only what trains), or everything."""
    from flwr.app import ArrayRecord

    if lora:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    elif head_only:
        head = set(head_names(model))
        state = {k: v for k, v in model.state_dict().items() if k in head}
    else:
        state = model.state_dict()
    return ArrayRecord({k: v.detach().cpu().contiguous() for k, v in state.items()})


def set_weights(model: Any, arrays: Any, lora: bool, head_only: bool = False) -> None:
    """Loads what get_weights exchanged; ValueError when head_only arrays are not the head."""
    state = arrays.to_torch_state_dict()
    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    elif head_only:
        if set(state) != set(head_names(model)):
            raise ValueError("the weights received are not this model's head")
        model.load_state_dict(state, strict=False)
    else:
        model.load_state_dict(state)
