"""Loading a base model and its tokenizer, offline only.

Three sources, as the study file says: a local checkpoint directory, a hub id that must
already be in the local Hugging Face cache, or a fresh model built from a transformers
config (tests and demos; its word-level tokenizer is trained on the training texts). Nothing
here ever downloads: hub access is forced offline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from gridpoint.errors import ModelLoadError, in_words
from gridpoint.trainers.study_config import ModelSpec

__all__ = ["LoadedModel", "data_free_tokenizer", "load_model", "model_family_and_public_id"]

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    family: str
    public_id: str


def _with_specials(tok: Any) -> Any:
    """Wraps a `tokenizers` tokenizer for transformers, adding [CLS] ... [SEP] around inputs."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _trained_tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        texts, trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS)
    )
    return _with_specials(tok)


def data_free_tokenizer() -> Any:
    """A byte-level tokenizer that needs no data: every byte is a token.

    For config-built models shared between organizations (federation), where a vocabulary
    learnt from one party's private text must not be needed or shipped.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(_SPECIALS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return _with_specials(tok)


def load_model(
    spec: ModelSpec,
    num_labels: int,
    train_texts: list[str],
    seed: int,
    tokenizer: Any | None = None,
) -> LoadedModel:
    """The model for sequence classification with num_labels, and its tokenizer.

    For a config-built model the tokenizer is `tokenizer` if given, else a word-level one
    trained on train_texts (which stay in this process).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    if spec.config:
        settings = dict(spec.config)
        model_type = settings.pop("model_type")
        tokenizer = tokenizer or _trained_tokenizer(
            train_texts, int(settings.get("vocab_size", 2000))
        )
        settings["vocab_size"] = len(tokenizer)
        try:
            config = AutoConfig.for_model(model_type, num_labels=num_labels, **settings)
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(
                f"model.config is not a valid {model_type!r} config: {exc}"
            ) from None
        model = AutoModelForSequenceClassification.from_config(config)
        return LoadedModel(model, tokenizer, config.model_type, spec.public_id)
    source = str(spec.path) if spec.path is not None else spec.hub_id
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        where = "the local checkpoint" if spec.path is not None else "the local Hugging Face cache"
        raise ModelLoadError(f"cannot load the base model from {where}: {in_words(exc)}") from None
    public = spec.public_id or spec.hub_id
    return LoadedModel(model, tokenizer, model.config.model_type, public)


def model_family_and_public_id(spec: ModelSpec) -> tuple[str, str]:
    """The model family and the id that may be published, without loading weights."""
    if spec.config:
        return str(spec.config["model_type"]), spec.public_id
    if spec.path is not None:
        try:
            family = str(json.loads((spec.path / "config.json").read_text()).get("model_type", ""))
        except (OSError, ValueError):
            family = ""
        return family, spec.public_id
    return "", spec.public_id or spec.hub_id
