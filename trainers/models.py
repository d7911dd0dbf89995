"""Loading a base model and its processor (tokenizer or image processor), offline only.

Sources, as the study file says: a local checkpoint directory (full weights, or a PEFT
adapter folder whose base is itself local), a hub id that must already be in the local Hugging
Face cache (a model, or an adapter whose base is cached too), or a fresh model built from a
transformers config (tests and demos; its word-level tokenizer is trained on the training
texts). A fourth, `artifact`, names a model the node keeps: the node resolves it to a path
before training; here it is refused. The head comes from the task type's Auto class.
Nothing here ever downloads: hub access is forced offline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridpoint.errors import ModelLoadError, in_words
from gridpoint.trainers.saved_model import quiet_transformers
from gridpoint.trainers.study_config import ModelSpec
from gridpoint.trainers.tasks import task_type
from gridpoint.trainers.tasks.base import TaskType
from gridpoint.trainers.word_tokenizer import data_free_tokenizer

__all__ = ["LoadedModel", "data_free_tokenizer", "load_model", "model_family_and_public_id"]


@dataclass
class LoadedModel:
    """A model ready to train, with its processor (named tokenizer: it is one for text tasks)."""

    model: Any
    tokenizer: Any
    family: str
    public_id: str

    @property
    def processor(self) -> Any:
        return self.tokenizer


def _offline() -> None:
    """No request to the Hugging Face Hub from this process from here on.

    huggingface_hub reads the environment's switch once, when it is imported: in a process
    that imported it before (a user's script, a test worker) the switch alone came too late,
    and loading a model missing from the cache asked the hub for its agent registry and, by
    name, for the model's adapter config. So the library's own flag is set as well.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def _hub_snapshot(hub_id: str) -> Path | None:
    """The folder of `hub_id`'s snapshot in the local Hugging Face cache, where it holds a
    model's config or a PEFT adapter's (it reads files only); None when it holds neither."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("config.json", "adapter_config.json"):
        try:
            found = try_to_load_from_cache(hub_id, name)
        except ValueError:  # not a valid repository id: no cache can hold it
            return None
        if isinstance(found, str):
            return Path(found).parent
    return None


def _auto_class(task: str) -> Any:
    import transformers

    return getattr(transformers, task_type(task).auto_class_name)


def load_model(
    spec: ModelSpec,
    num_labels: int,
    train_texts: list[str],
    seed: int,
    tokenizer: Any | None = None,
    task: str = "text-classification",
) -> LoadedModel:
    """The model for `task` (with num_labels for classification heads) and its processor.

    For a config-built model the processor is `tokenizer` if given, else the task's own (a
    word-level tokenizer trained on train_texts, which stay in this process).
    """
    _offline()
    import torch
    from transformers import AutoConfig

    quiet_transformers()
    if spec.artifact:
        raise ModelLoadError(
            "model.artifact names a model this node keeps; run the study with `gridpoint tune`, "
            "which resolves it to its folder (trainers cannot load an artifact id)"
        )
    kind = task_type(task)
    auto = _auto_class(task)
    torch.manual_seed(seed)
    if spec.config:
        settings = dict(spec.config)
        model_type = settings.pop("model_type")
        processor = tokenizer or kind.config_processor(train_texts, settings)
        settings.update(kind.config_kwargs(num_labels, processor))
        try:
            config = AutoConfig.for_model(model_type, **settings)
            model = auto.from_config(config)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelLoadError(
                f"model.config is not a valid {model_type!r} config for {task}: {in_words(exc)}"
            ) from None
        kind.prepare_model(model, processor)
        return LoadedModel(model, processor, config.model_type, spec.public_id)
    folder = spec.path if spec.path is not None else _hub_snapshot(spec.hub_id)
    if folder is None:
        # transformers' own words here would say it could not connect, though nothing was tried.
        raise ModelLoadError(
            "cannot load the base model from the local Hugging Face cache: the study's hub_id "
            "is not there, and gridpoint never downloads; download it once where there is "
            "network (`hf download <hub_id>`, then bring the cache here) or give the "
            "checkpoint's folder as `path =` in the study's [model]"
        )
    source = str(spec.path) if spec.path is not None else spec.hub_id
    head = {"num_labels": num_labels} if kind.num_labels_needed else {}
    try:
        # A PEFT adapter, in a folder or a hub repo: merged into its base, which must be local.
        if (folder / "adapter_config.json").is_file():
            model, base = _merged_adapter(folder, auto, head)
            processor = _adapter_processor(kind, folder, base)
        else:
            model = auto.from_pretrained(source, local_files_only=True, **head)
            processor = kind.pretrained_processor(source)
    except (OSError, ValueError) as exc:
        where = "the local checkpoint" if spec.path is not None else "the local Hugging Face cache"
        raise ModelLoadError(f"cannot load the base model from {where}: {in_words(exc)}") from None
    kind.prepare_model(model, processor)
    public = spec.public_id or spec.hub_id
    return LoadedModel(model, processor, model.config.model_type, public)


def _merged_adapter(folder: Path, auto: Any, head: dict[str, Any]) -> tuple[Any, str]:
    """A PEFT adapter folder's base (local only) with the adapter merged into it.

    ValueError, in words that name no local path, when the base or the adapter's weights are
    missing (transformers' own words for a base it cannot find say it could not connect).
    """
    from peft import PeftModel

    base = str(
        json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        or ""
    )
    if not base:
        raise ValueError("the adapter's adapter_config.json names no base model")
    if os.path.isabs(base) or base.startswith((".", "~")):
        base = str(Path(base).expanduser())
        if not Path(base).is_dir():
            raise ValueError(
                "the adapter's base model folder (base_model_name_or_path in its "
                "adapter_config.json; a relative one is read from the current directory) is "
                "not there"
            )
    elif not Path(base).is_dir() and _hub_snapshot(base) is None:
        raise ValueError(
            f"the adapter's base model {base!r} is not in the local Hugging Face cache either "
            f"(gridpoint never downloads: `hf download {base}` where there is network)"
        )
    if not any((folder / f"adapter_model.{ext}").is_file() for ext in ("safetensors", "bin")):
        raise ValueError(
            "the adapter's weights (adapter_model.safetensors) are not beside its "
            "adapter_config.json; copy or download the adapter whole"
        )
    model = auto.from_pretrained(base, local_files_only=True, **head)
    # Merged, the adapter becomes part of the weights: a trial may put a fresh LoRA on top.
    merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    # PEFT loads for inference, every weight frozen: a full fine-tune had none to train.
    merged.requires_grad_(True)
    # The weights are no longer the base's: a LoRA trial on them must be saved merged, never
    # as an adapter naming the bare base (saved_method), which would drop this adapter.
    merged.name_or_path = merged.config.name_or_path = ""
    return merged, base


def _adapter_processor(kind: TaskType, folder: Path, base: str) -> Any:
    """The processor saved with an adapter, else its base's (many adapter repos on the hub
    hold the adapter's weights and config alone)."""
    try:
        return kind.pretrained_processor(str(folder))
    except (OSError, ValueError):
        return kind.pretrained_processor(base)


def model_family_and_public_id(spec: ModelSpec) -> tuple[str, str]:
    """The model family and the id that may be published, without loading weights."""
    if spec.config:
        return str(spec.config["model_type"]), spec.public_id
    if spec.path is not None:
        family = ""
        for name in ("config.json", "adapter_config.json"):
            try:
                data = json.loads((spec.path / name).read_text())
            except (OSError, ValueError):
                continue
            family = str(data.get("model_type", "") or "")
            if family:
                break
        return family, spec.public_id
    return "", spec.public_id or spec.hub_id
