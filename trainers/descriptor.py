"""The task descriptor of a private dataset, computed where the data lives.

Only buckets come out (size, class balance, text length) plus the label count and the
language the organization declares; never rows, texts, label names or exact sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridpoint.schema import TaskDescriptor
from gridpoint.schema.vocabulary import balance_bucket, size_bucket, text_length_bucket

__all__ = ["describe", "describe_data"]


def describe(
    task_type: str, language: str, texts: Sequence[str], labels: Sequence[int]
) -> TaskDescriptor:
    """The descriptor of a training set of texts with integer labels."""
    return TaskDescriptor(
        type=task_type,
        num_labels=len(set(labels)),
        size_bucket=size_bucket(len(texts)),
        balance_bucket=balance_bucket(labels),
        language=language,
        text_length_bucket=text_length_bucket(texts),
    )


def describe_data(task_type: str, language: str, train: Any) -> TaskDescriptor:
    """The descriptor of a training set as the task type holds it (trainers/tasks/)."""
    from gridpoint.trainers.tasks import task_type as task_of

    return task_of(task_type).describe(train, language)
