"""A trained model handed to the node, and the folder it is saved as.

The folder is what plain `transformers` / `peft` `from_pretrained` load, with nothing of
gridpoint needed to read it: for LoRA on a base with a public hub id, the adapter alone (its
`adapter_config.json` names the base); for LoRA on anything else (a local checkpoint, whose
path would be written into the adapter's files; a config-built model, which has no checkpoint
to put an adapter on) the adapter merged into full weights; always with the processor
(tokenizer or image processor) beside them. A classification model keeps its label names in
`config.json` (`id2label`, label i being the i-th of the training labels in sorted order):
the folder is private to the node that trained it, and `model share` refuses to send label
names or a vocabulary learnt from the training texts unless told to (node/artifacts/
private_parts.py).

Must never write anything of the training data but those two (label names, a learnt
vocabulary), nor a local path, nor draw a progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridpoint.schema.vocabulary import public_hub_id

__all__ = ["TrainedModel", "adapter_base", "quiet_transformers", "save_trained", "saved_method"]


@dataclass
class TrainedModel:
    """A trial's trained model, its processor (tokenizer or image processor) and method.

    method is what save_trained writes (saved_method): "lora" for the adapter alone, "full"
    otherwise. label_names: the classification labels by id (none for other tasks).
    """

    model: Any
    processor: Any
    method: str
    label_names: tuple[str, ...] = ()


def adapter_base(model: Any) -> str:
    """The base a PEFT model's adapter sits on ("" when not a PEFT model or built from a config)."""
    config = getattr(model, "peft_config", None)
    if not config:
        return ""
    return str(next(iter(config.values())).base_model_name_or_path or "")


def saved_method(model: Any) -> str:
    """ "lora" when the adapter is saved alone (its base is a public hub id), else "full"."""
    return "lora" if public_hub_id(adapter_base(model)) else "full"


def quiet_transformers() -> None:
    """No progress bars from transformers or the hub (transformers turns both off): they would
    cut into tune's own output."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def save_trained(trained: TrainedModel, folder: Path) -> None:
    """Writes trained as a folder `from_pretrained` loads (see the module docstring)."""
    quiet_transformers()
    folder.mkdir(parents=True, exist_ok=True)
    model = trained.model
    if trained.label_names:
        model.config.id2label = dict(enumerate(trained.label_names))
        model.config.label2id = {name: i for i, name in enumerate(trained.label_names)}
    if getattr(model, "peft_config", None):
        if saved_method(model) == "lora":
            model.save_pretrained(folder)
        else:
            model.merge_and_unload().save_pretrained(folder)
    else:
        model.save_pretrained(folder)
    if trained.processor is not None:
        trained.processor.save_pretrained(folder)
