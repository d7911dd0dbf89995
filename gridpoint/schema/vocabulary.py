"""The fixed vocabularies of a public record, and the rules that put a value into them.

Every bucket a task descriptor can hold, and the one function that computes each from private
data, live here, so that the trainer that measures a dataset, the record's validation and
the warm start's distance all read the same list.

Must never hold anything but pure functions over numbers and short strings: this module is
imported by the daemon, the trainers and users' code alike.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "BALANCE_BUCKETS",
    "DIMENSION_KINDS",
    "DIRECTIONS",
    "FAILURES",
    "IMAGE_SIZE_BUCKETS",
    "KINDS",
    "METHODS",
    "SIZE_BUCKETS",
    "STATUSES",
    "TEXT_LENGTH_BUCKETS",
    "balance_bucket",
    "image_size_bucket",
    "public_hub_id",
    "size_bucket",
    "text_length_bucket",
]

KINDS = ("trial", "federated")
STATUSES = ("complete", "pruned", "failed")
#: Ordered from small to large: the warm start's distance uses the order.
SIZE_BUCKETS = ("<1k", "1k-10k", "10k-100k", "100k-1m", ">1m")
BALANCE_BUCKETS = ("", "low", "medium", "high")
TEXT_LENGTH_BUCKETS = ("", "<32", "32-128", "128-512", ">512")
#: Median image side (the longer side, in pixels); "" for tasks without images.
IMAGE_SIZE_BUCKETS = ("", "<64", "64-224", "224-512", ">512")
DIMENSION_KINDS = ("float", "int", "categorical")
#: Which weights a run fine-tuned: every one ("full"), LoRA adapters and the head ("lora"),
#: or the task's head alone on the frozen base model ("head", `[training] trainable = "head"`).
METHODS = ("full", "lora", "head")
DIRECTIONS = ("", "maximize", "minimize")
#: Why a failed run failed, when that tells a peer something about its hyperparameters.
FAILURES = ("", "diverged", "out-of-memory")

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?")

_SIZE_LIMITS = (1_000, 10_000, 100_000, 1_000_000)
_TEXT_LIMITS = (32, 128, 512)
_IMAGE_LIMITS = (64, 224, 512)


def size_bucket(n: int) -> str:
    """The size bucket of a dataset of n examples."""
    for limit, name in zip(_SIZE_LIMITS, SIZE_BUCKETS, strict=False):
        if n < limit:
            return name
    return SIZE_BUCKETS[-1]


def balance_bucket(labels: Sequence[int]) -> str:
    """Normalized entropy of the label distribution, bucketed ("low" for one class)."""
    counts = Counter(labels)
    if len(counts) < 2:
        return "low"
    total = len(labels)
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    normalized = entropy / math.log(len(counts))
    return "low" if normalized < 0.5 else "medium" if normalized < 0.9 else "high"


def text_length_bucket(texts: Sequence[str]) -> str:
    """The bucket of the median length in words."""
    median = statistics.median(len(t.split()) for t in texts) if texts else 0
    for limit, name in zip(_TEXT_LIMITS, TEXT_LENGTH_BUCKETS[1:], strict=False):
        if median < limit:
            return name
    return TEXT_LENGTH_BUCKETS[-1]


def image_size_bucket(sizes: Sequence[tuple[int, int]]) -> str:
    """The bucket of the median longer side of images given as (width, height); "" for none."""
    if not sizes:
        return ""
    median = statistics.median(max(width, height) for width, height in sizes)
    for limit, name in zip(_IMAGE_LIMITS, IMAGE_SIZE_BUCKETS[1:], strict=False):
        if median < limit:
            return name
    return IMAGE_SIZE_BUCKETS[-1]


def public_hub_id(candidate: str) -> str:
    """candidate if it reads as a public hub id ('org/model'), else "".

    A path-looking id (absolute, relative, home, Windows) is private by definition.
    """
    if (
        not candidate
        or candidate.startswith(("/", ".", "~"))
        or "\\" in candidate
        or ".." in candidate
    ):
        return ""
    return candidate if HUB_ID.fullmatch(candidate) else ""
