"""What a kept model learnt verbatim from its owner's private data, found in its files.

Sharing a model sends every file of it. Most of a fine-tuned model is weights, but a few
files hold the training data's own words: a word-level tokenizer built from the training
texts (`tokenizer.json`, for models built from a config: its vocabulary *is* the texts'
words), the labels' names (`config.json` `id2label`, unless they are the generic LABEL_i),
and, for an adapter kept before adapters on local checkpoints were merged, the base's local
path (`adapter_config.json`). `model share` refuses a model that has any, naming them, unless
its owner passes --include-private: the model is not usable without its vocabulary, so
leaving that file out would share nothing of use.

Must never: read a file's contents into a message (only which file and what kind of thing).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gridpoint.schema.vocabulary import public_hub_id

__all__ = ["private_parts"]

_GENERIC_LABEL = re.compile(r"LABEL_\d+")
#: Larger files are not settings files; they are not parsed here.
_MAX_JSON_BYTES = 64 * 1024 * 1024


def _json(path: Path) -> Any:
    if not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def private_parts(folder: Path) -> list[str]:
    """Each thing of folder learnt from private data, in words (empty: none found)."""
    parts: list[str] = []
    tokenizer = _json(folder / "tokenizer.json")
    if isinstance(tokenizer, dict) and (tokenizer.get("model") or {}).get("type") == "WordLevel":
        parts.append("a word-level vocabulary learnt from the training texts (tokenizer.json)")
    config = _json(folder / "config.json")
    labels = config.get("id2label") if isinstance(config, dict) else None
    if isinstance(labels, dict) and any(
        not _GENERIC_LABEL.fullmatch(str(name)) for name in labels.values()
    ):
        parts.append("the names of the training labels (config.json id2label)")
    adapter = _json(folder / "adapter_config.json")
    base = adapter.get("base_model_name_or_path") if isinstance(adapter, dict) else None
    if base and not public_hub_id(str(base)):
        parts.append("the local path of its base model (adapter_config.json)")
    return parts
