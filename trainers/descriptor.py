"""Coarse task meta-features of a private dataset, computed where the data lives.

Only buckets come out (size, class balance, text length) plus the label count and the
language the organization declares; never rows, texts, label names or exact sizes.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TaskFeatures", "describe"]


@dataclass(frozen=True)
class TaskFeatures:
    """Bucketed meta-features (see records.proto TaskDescriptor for the bucket names)."""

    type: str
    num_labels: int
    size_bucket: str
    balance_bucket: str
    language: str
    text_length_bucket: str


def size_bucket(n: int) -> str:
    for limit, name in (
        (1_000, "<1k"),
        (10_000, "1k-10k"),
        (100_000, "10k-100k"),
        (1_000_000, "100k-1m"),
    ):
        if n < limit:
            return name
    return ">1m"


def balance_bucket(labels: Sequence[int]) -> str:
    """Normalized entropy of the label distribution, bucketed."""
    counts = Counter(labels)
    if len(counts) < 2:
        return "low"
    total = len(labels)
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    normalized = entropy / math.log(len(counts))
    return "low" if normalized < 0.5 else "medium" if normalized < 0.9 else "high"


def text_length_bucket(texts: Sequence[str]) -> str:
    median = statistics.median(len(t.split()) for t in texts) if texts else 0
    for limit, name in ((32, "<32"), (128, "32-128"), (512, "128-512")):
        if median < limit:
            return name
    return ">512"


def describe(
    task_type: str, language: str, texts: Sequence[str], labels: Sequence[int]
) -> TaskFeatures:
    """The features of a training set of texts with integer labels."""
    return TaskFeatures(
        type=task_type,
        num_labels=len(set(labels)),
        size_bucket=size_bucket(len(texts)),
        balance_bucket=balance_bucket(labels),
        language=language,
        text_length_bucket=text_length_bucket(texts),
    )
