"""A private data pipeline for examples/causal-lm-study.toml: generated instruction pairs.

An organization's real pipeline returns its own (prompt, response) pairs here; whatever it
returns stays in the node process. This one makes small, deterministic instructions about
made-up facts, so the model has something to learn in a minute on a CPU.
"""

from __future__ import annotations

import random

COUNTRIES = ["Avaria", "Belmont", "Corvia", "Dunmere", "Elbria", "Fenwick", "Galora", "Harwen"]
CAPITALS = ["Ostra", "Pellin", "Quarry", "Rusk", "Selden", "Tarrow", "Ulm", "Varna"]
COLOURS = ["red", "green", "blue", "amber", "violet", "grey", "white", "black"]


def _pair(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(len(COUNTRIES))
    country, capital, colour = COUNTRIES[i], CAPITALS[i], COLOURS[i]
    kind = rng.randrange(3)
    if kind == 0:
        return f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    if kind == 1:
        return f"Which colour is the flag of {country}?", f"The flag of {country} is {colour}."
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"Add {a} and {b}.", f"{a} plus {b} is {a + b}."


def load() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, eval) as (prompt, response) pairs."""
    rng = random.Random(7)
    return [_pair(rng) for _ in range(256)], [_pair(rng) for _ in range(48)]
