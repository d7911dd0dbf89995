"""The order examples are batched in: shuffled, with similar lengths grouped together.

Batches pad to their own longest example, so grouping lengths (as transformers'
LengthGroupedSampler does) cuts the padding; the groups are shuffled so training still sees
a random order of batches. Pure and seeded: the same seed gives the same batches.
"""

from __future__ import annotations

import random

__all__ = ["eval_batches", "length_grouped_batches"]

#: Batches of one group: lengths are sorted within a window this many batches wide.
_GROUP = 50


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Index batches for one epoch: random windows, each sorted by length, batch order shuffled."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * _GROUP
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Index batches for evaluation: sorted by length (order does not change the metrics)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
