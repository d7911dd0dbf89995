"""A private data pipeline for examples/token-classification-study.toml: tagged sentences.

An organization's real pipeline returns its own (words, tags) pairs here (tags in IOB2, such
as B-PER, I-PER, O); they and the tag names stay in the node process. This one makes
sentences from templates with people, places and organisations, deterministically.
"""

from __future__ import annotations

import random

PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Ken Thompson", "Barbara Liskov", "Linus"]
PLACES = ["Paris", "New York", "Lagos", "Kyoto", "Buenos Aires", "Oslo"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli"]
TEMPLATES = [
    "{PER} moved to {LOC} last year .",
    "{PER} joined {ORG} in {LOC} .",
    "the office of {ORG} is in {LOC} .",
    "yesterday {PER} met {PER} at {ORG} .",
    "{ORG} hired {PER} .",
]
POOLS = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGS}


def _sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    words: list[str] = []
    tags: list[str] = []
    for part in rng.choice(TEMPLATES).split():
        if part.startswith("{"):
            kind = part[1:4]
            name = rng.choice(POOLS[kind]).split()
            words += name
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        else:
            words.append(part)
            tags.append("O")
    return words, tags


def load() -> tuple[list[tuple[list[str], list[str]]], list[tuple[list[str], list[str]]]]:
    """(train, eval) as (words, tags) pairs."""
    rng = random.Random(3)
    return [_sentence(rng) for _ in range(320)], [_sentence(rng) for _ in range(64)]
