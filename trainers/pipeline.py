"""Resolving and calling an organization's private data pipeline.

The pipeline is the study file's `pipeline = "module:function"`, imported with the study
file's folder first on the import path. It returns (train, eval): Hugging Face
`datasets.Dataset`s or sequences of (text, label) pairs. Its data stays in this process.
Errors name the pipeline and the problem, never a row or a label value.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gridpoint.errors import PipelineError
from gridpoint.trainers.study_config import StudyConfig

__all__ = ["LabeledTexts", "load_data"]


@dataclass(frozen=True)
class LabeledTexts:
    """Texts with integer labels; label_names maps ids back to the private names."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def _import(config: StudyConfig) -> Any:
    module_name, _, func_name = config.pipeline.partition(":")
    folder = str(config.path.parent)
    sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(
            f"pipeline module {module_name!r} cannot be imported ({exc.__class__.__name__})"
        ) from None
    except Exception as exc:
        # The organization's own code failed while loading: its message, on its terminal.
        raise PipelineError(
            f"pipeline module {module_name!r} raised {exc.__class__.__name__} when imported: "
            f"{str(exc)[:300]}"
        ) from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PipelineError(
            f"pipeline {config.pipeline!r}: {func_name!r} is not a function of {module_name!r}"
        )
    return func


def _pairs(split: Any, config: StudyConfig, which: str) -> list[tuple[str, Any]]:
    if hasattr(split, "column_names"):  # a datasets.Dataset
        missing = [
            c for c in (config.text_column, config.label_column) if c not in split.column_names
        ]
        if missing:
            raise PipelineError(f"{which} split lacks the configured text/label column(s)")
        return list(zip(split[config.text_column], split[config.label_column], strict=True))
    if not isinstance(split, Sequence) or isinstance(split, str | bytes):
        raise PipelineError(
            f"{which} split must be a datasets.Dataset or a sequence of (text, label)"
        )
    pairs = []
    for i, item in enumerate(split):
        if not (isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str)):
            raise PipelineError(f"{which} split item {i} is not a (text, label) pair")
        pairs.append((item[0], item[1]))
    return pairs


def load_data(config: StudyConfig) -> tuple[LabeledTexts, LabeledTexts]:
    """Calls the pipeline and returns (train, eval) with labels mapped to ids."""
    func = _import(config)
    try:
        result = func()
    except Exception as exc:
        # The organization's own error, shown on its own terminal; what leaves the node never
        # carries it (records hold no error text; a federation member sends only its kind).
        detail = str(exc)[:300]
        raise PipelineError(
            f"pipeline {config.pipeline!r} raised {exc.__class__.__name__}"
            + (f": {detail}" if detail else "")
        ) from None
    if not (isinstance(result, tuple) and len(result) == 2):
        raise PipelineError(f"pipeline {config.pipeline!r} must return (train, eval)")
    train, evaluation = (
        _pairs(split, config, which) for split, which in zip(result, ("train", "eval"), strict=True)
    )
    if len(train) < 2 or len(evaluation) < 1:
        raise PipelineError("the train split needs at least 2 examples and eval at least 1")
    names = sorted({str(label) for _, label in train})
    if len(names) < 2:
        raise PipelineError("the train split has fewer than 2 distinct labels")
    index = {name: i for i, name in enumerate(names)}
    unseen = {str(label) for _, label in evaluation} - set(index)
    if unseen:
        raise PipelineError(f"the eval split has {len(unseen)} label(s) absent from train")

    def labeled(pairs: list[tuple[str, Any]]) -> LabeledTexts:
        return LabeledTexts([t for t, _ in pairs], [index[str(lab)] for _, lab in pairs], names)

    return labeled(train), labeled(evaluation)
