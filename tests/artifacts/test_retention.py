"""Retention of a study's trial models: exactly the best K stay, and no other is even saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.artifacts.keep import keep_trial_model
from gridpoint.node.store.sql_store import SqlStore
from tests.artifacts.helpers import info
from tests.helpers import MakeHome


class _Saver:
    """A producer's save: writes a small distinct folder and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights %d" % self.calls)
        (folder / "config.json").write_text("{}")


@pytest.mark.parametrize(
    ("direction", "scores", "kept"),
    [
        ("maximize", [0.5, 0.9, 0.7, 0.6, 0.95, 0.9], [0.95, 0.9]),
        ("minimize", [0.5, 0.9, 0.2, 0.6, 0.3], [0.2, 0.3]),
    ],
)
def test_a_study_keeps_exactly_its_best_k_models(
    store: SqlStore, make_home: MakeHome, direction: str, scores: list[float], kept: list[float]
) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    save = _Saver()
    for score in scores:
        keep_trial_model(artifacts, save, info(group="s", score=score), keep=2, direction=direction)

    held = artifacts.list(group="s")
    assert sorted((a.score or 0.0 for a in held), reverse=direction == "maximize") == kept
    assert save.calls < len(scores)  # models that could not rank were never written
    assert sorted(p.name for p in artifacts.root.iterdir()) == sorted(a.id for a in held)


def test_keep_zero_keeps_nothing_and_other_studies_are_left_alone(
    store: SqlStore, make_home: MakeHome
) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    save = _Saver()
    other = keep_trial_model(
        artifacts, save, info(group="other", score=0.1), keep=1, direction="maximize"
    )

    assert (
        keep_trial_model(artifacts, save, info(group="s", score=0.9), keep=0, direction="maximize")
        is None
    )
    keep_trial_model(artifacts, save, info(group="s", score=0.9), keep=1, direction="maximize")
    keep_trial_model(artifacts, save, info(group="s", score=0.95), keep=1, direction="maximize")

    assert [a.score for a in artifacts.list(group="s")] == [0.95]
    assert other is not None and artifacts.get(other.id).group == "other"


def test_a_tie_keeps_the_earlier_model(store: SqlStore, make_home: MakeHome) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    save = _Saver()
    first = keep_trial_model(
        artifacts, save, info(group="s", score=0.9), keep=1, direction="maximize"
    )
    second = keep_trial_model(
        artifacts, save, info(group="s", score=0.9), keep=1, direction="maximize"
    )

    assert first is not None and second is None
    assert [a.id for a in artifacts.list(group="s")] == [first.id]
