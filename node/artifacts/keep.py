"""What `tune` keeps: the best K trial models of a study, and a study's start from a kept model.

keep_trial_model() saves a complete trial's model (through the producer's own `save`, so
this module never loads torch) only when it ranks among the study's best K, adds it, then
applies retention: exactly the best K of the study's kept trial models remain, ties going
to the earlier one, and any registered as a model version besides. start_from_artifact()
turns `model = { artifact = "ID" }` into the kept folder, and names the artifact's record as
the parent of every trial that starts from it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridpoint.node.artifacts.store import Artifact, ArtifactStore, NewArtifact

__all__ = ["apply_retention", "keep_trial_model", "ranks_among_best", "start_from_artifact"]


def _ranked(artifacts: ArtifactStore, group: str, direction: str) -> list[Artifact]:
    """The study's kept trial models (this node's own), best first, earlier first on ties."""
    mine = artifacts.list(group=group)
    trials = [a for a in mine if a.kind == "trial" and a.score is not None]
    trials.sort(key=lambda a: a.created_at)
    sign = -1.0 if direction == "maximize" else 1.0
    return sorted(trials, key=lambda a: sign * float(a.score or 0.0))


def ranks_among_best(
    artifacts: ArtifactStore, group: str, keep: int, direction: str, score: float
) -> bool:
    """Whether a model scoring score would be among the study's best keep."""
    if keep <= 0:
        return False
    ranked = _ranked(artifacts, group, direction)
    if len(ranked) < keep:
        return True
    worst = float(ranked[keep - 1].score or 0.0)
    return score > worst if direction == "maximize" else score < worst


def apply_retention(artifacts: ArtifactStore, group: str, keep: int, direction: str) -> list[str]:
    """Removes all but the study's best keep trial models, except those registered in the
    model registry (a version is removed only by deregistering it); returns the removed ids."""
    pinned = artifacts.registered()
    removed = [a.id for a in _ranked(artifacts, group, direction)[keep:] if a.id not in pinned]
    for artifact_id in removed:
        artifacts.remove(artifact_id)
    return removed


def keep_trial_model(
    artifacts: ArtifactStore,
    save: Callable[[Path], None],
    info: NewArtifact,
    *,
    keep: int,
    direction: str,
) -> Artifact | None:
    """Keeps a complete trial's model when it ranks among the best keep (None otherwise).

    save writes the model folder; it runs inside the models folder, whose temporary entries
    a later run sweeps if this process dies midway.
    """
    if info.score is None or not ranks_among_best(
        artifacts, info.group, keep, direction, info.score
    ):
        return None
    with tempfile.TemporaryDirectory(dir=artifacts.root, prefix=f".tmp-{os.getpid()}-") as tmp:
        folder = Path(tmp) / "model"
        save(folder)
        artifact = artifacts.add(folder, info)
    apply_retention(artifacts, info.group, keep, direction)
    return artifact


def start_from_artifact(artifacts: ArtifactStore, config: Any) -> tuple[Any, tuple[str, ...]]:
    """The study config with `model.artifact` resolved to its kept folder, and the parents
    (the artifact's record) of the study's trials; the config unchanged when it names none."""
    spec = config.model
    if not spec.artifact:
        return config, ()
    artifact = artifacts.get(spec.artifact)
    model = dataclasses.replace(
        spec,
        path=artifacts.folder(artifact),
        artifact="",
        public_id=spec.public_id or artifact.base_model,
    )
    parents = (artifact.record_id,) if artifact.record_id else ()
    return dataclasses.replace(config, model=model), parents
