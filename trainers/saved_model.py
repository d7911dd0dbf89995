"""A trained model handed to the node, and the folder it is saved as.

The folder is what plain `transformers` / `peft` `from_pretrained` load, with nothing of
gridpoint needed to read it: for LoRA on a base that exists as a local checkpoint or hub id,
the adapter alone (its `adapter_config.json` names the base); otherwise the full weights (a
config-built base has no checkpoint to put an adapter on, so the adapter is merged first);
always with the processor (tokenizer or image processor) beside them.

Must never write anything of the training data, nor label names (the model's config keeps
the generic LABEL_0 ... names the trainers give it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TrainedModel", "adapter_base", "save_trained"]


@dataclass
class TrainedModel:
    """A trial's trained model, its processor (tokenizer or image processor) and method.

    method is "lora" when the model is a PEFT model whose base can be loaded again (a local
    checkpoint or a hub id), "full" otherwise.
    """

    model: Any
    processor: Any
    method: str


def adapter_base(model: Any) -> str:
    """The base a PEFT model's adapter sits on ("" when not a PEFT model or built from a config)."""
    config = getattr(model, "peft_config", None)
    if not config:
        return ""
    return str(next(iter(config.values())).base_model_name_or_path or "")


def save_trained(trained: TrainedModel, folder: Path) -> None:
    """Writes trained as a folder `from_pretrained` loads (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = trained.model
    if getattr(model, "peft_config", None):
        if trained.method == "lora" and adapter_base(model):
            model.save_pretrained(folder)
        else:
            model.merge_and_unload().save_pretrained(folder)
    else:
        model.save_pretrained(folder)
    if trained.processor is not None:
        trained.processor.save_pretrained(folder)
