"""A private data pipeline for examples/tiny-study.toml: generated, labeled sentences.

An organization's real pipeline reads its own data here; whatever it returns stays in the
node process. This one makes a small two-class text task from word lists, deterministically.
"""

from __future__ import annotations

import random

POSITIVE = [
    "great",
    "excellent",
    "lovely",
    "superb",
    "fine",
    "pleasant",
    "good",
    "wonderful",
    "brilliant",
    "happy",
]
NEGATIVE = [
    "awful",
    "poor",
    "terrible",
    "bad",
    "dreadful",
    "sad",
    "boring",
    "broken",
    "ugly",
    "slow",
]
NEUTRAL = [
    "the",
    "a",
    "this",
    "that",
    "movie",
    "service",
    "product",
    "day",
    "item",
    "order",
    "really",
    "quite",
    "very",
    "it",
    "was",
    "is",
]


def _sentence(rng: random.Random, positive: bool) -> str:
    words = rng.choices(NEUTRAL, k=rng.randint(4, 9))
    cues = POSITIVE if positive else NEGATIVE
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
    return " ".join(words)


def make(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [
        (_sentence(rng, i % 2 == 0), "positive" if i % 2 == 0 else "negative") for i in range(n)
    ]


def load() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, eval) as (text, label) pairs."""
    return make(320, seed=1), make(80, seed=2)


def load_beta() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Another organization's data for the demo: the same kind of task, other sentences."""
    return make(480, seed=11), make(120, seed=12)


def load_few() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Fewer sentences, for a pretrained model (examples/minilm-study.toml): it needs less."""
    return make(96, seed=1), make(64, seed=2)


def load_beta_few() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Beta's data for the pretrained demo: the same kind of task, other sentences."""
    return make(128, seed=11), make(64, seed=12)
