"""A private data pipeline for examples/image-classification-study.toml: generated images.

An organization's real pipeline returns its own (image, label) pairs here, as PIL images or
arrays; they stay in the node process. This one draws noisy 32x32 images of three patterns
(horizontal stripes, vertical stripes, a checkerboard), deterministically.
"""

from __future__ import annotations

import numpy as np

LABELS = ["horizontal", "vertical", "checkers"]


def _image(rng: np.random.Generator, label: int) -> np.ndarray:
    period = int(rng.integers(3, 7))
    grid = np.indices((32, 32)) // period
    pattern = [grid[0] % 2, grid[1] % 2, (grid[0] + grid[1]) % 2][label]
    colour = rng.uniform(0.3, 1.0, size=3)
    image = pattern[..., None] * colour + rng.normal(0, 0.15, size=(32, 32, 3))
    return np.clip(image, 0, 1).astype(np.float32)


def _split(n: int, seed: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    return [(_image(rng, i % 3), LABELS[i % 3]) for i in range(n)]


def load() -> tuple[list[tuple[np.ndarray, str]], list[tuple[np.ndarray, str]]]:
    """(train, eval) as (image array HxWx3 in [0, 1], label) pairs."""
    return _split(300, 5), _split(60, 6)
