"""The task descriptor of a run from elsewhere: from a Trainer's train dataset, or as declared.

A Trainer's train dataset is measured where it lives, into buckets only (size, class balance,
text length, label count), with the same bucket functions `tune` uses. For an Optuna study or
an MLflow experiment, where no dataset is at hand, the organization declares the task.

Must never return or keep a row, a text, a label name or a column name: only buckets leave.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from gridpoint.errors import ConfigError
from gridpoint.schema import TaskDescriptor
from gridpoint.schema.vocabulary import balance_bucket, size_bucket, text_length_bucket
from gridpoint.trainers.study_config import TASKS

__all__ = ["declared_task", "describe_dataset"]

#: Rows read from a dataset that has no columns to read at once (a torch-style dataset).
SAMPLED_ROWS = 2_000
_LABEL_COLUMNS = ("labels", "label")
_TEXT_COLUMNS = ("text", "sentence", "content")
_LANGUAGE = re.compile(r"[a-z]{2}")
#: What token-classification labels use for "not a token to score" (HF's convention).
_IGNORED_LABEL = -100


def _check_type(task_type: str) -> str:
    if task_type not in TASKS:
        raise ConfigError(f"task type {task_type!r} is not one of {', '.join(TASKS)}")
    return task_type


def _check_language(language: str) -> str:
    if language and not _LANGUAGE.fullmatch(language):
        raise ConfigError(f"language {language!r} is not an ISO 639-1 code like 'en'")
    return language


def declared_task(
    task_type: str, *, train_size: int, language: str = "", num_labels: int = 0
) -> TaskDescriptor:
    """A descriptor from what the organization declares: only the size's bucket is kept."""
    if train_size < 1:
        raise ConfigError(
            "give the number of training examples (train_size= or --train-size N; "
            "only its size bucket is published)"
        )
    if num_labels < 0:
        raise ConfigError("the number of labels cannot be negative")
    return TaskDescriptor(
        type=_check_type(task_type),
        num_labels=num_labels,
        size_bucket=size_bucket(train_size),
        language=_check_language(language),
    )


def _flat_labels(values: Iterable[Any]) -> list[int]:
    labels: list[int] = []
    for value in values:
        if isinstance(value, Sequence) and not isinstance(value, str):
            labels.extend(int(v) for v in value if int(v) != _IGNORED_LABEL)
        elif isinstance(value, int) or hasattr(value, "item"):
            labels.append(int(value))
    return labels


def _columns(dataset: Any) -> tuple[list[Any] | None, list[str] | None]:
    """(labels, texts) of a dataset: whole columns when it has them, else a sample of rows."""
    names = getattr(dataset, "column_names", None)
    if isinstance(names, list):
        label = next((c for c in _LABEL_COLUMNS if c in names), None)
        text = next((c for c in _TEXT_COLUMNS if c in names), None)
        return (
            list(dataset[label]) if label else None,
            [str(t) for t in dataset[text]] if text else None,
        )
    n = len(dataset)
    rows = [dataset[i] for i in range(0, n, max(1, n // SAMPLED_ROWS))]
    dicts = [r for r in rows if isinstance(r, dict)]
    label = next((c for c in _LABEL_COLUMNS if dicts and c in dicts[0]), None)
    text = next((c for c in _TEXT_COLUMNS if dicts and c in dicts[0]), None)
    return (
        [r[label] for r in dicts] if label else None,
        [str(r[text]) for r in dicts] if text else None,
    )


def describe_dataset(dataset: Any, task_type: str, language: str = "") -> TaskDescriptor:
    """The buckets of a train dataset (a `datasets.Dataset` or any sized, indexable dataset)."""
    _check_type(task_type)
    try:
        size = len(dataset)
    except TypeError:
        raise ConfigError(
            "the train dataset has no length (an iterable dataset): pass task= a "
            "gridpoint.TaskDescriptor instead of a task type"
        ) from None
    labels_raw, texts = _columns(dataset)
    labels = _flat_labels(labels_raw) if labels_raw is not None else []
    classify = task_type != "causal-lm"
    return TaskDescriptor(
        type=task_type,
        num_labels=len(set(labels)) if classify else 0,
        size_bucket=size_bucket(size),
        balance_bucket=balance_bucket(labels) if classify and labels else "",
        language=_check_language(language),
        text_length_bucket=text_length_bucket(texts) if texts else "",
    )
