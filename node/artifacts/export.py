"""`model export`: a held model copied out, signed so that any tool can check it.

export_model() resolves an artifact id, unique prefix or registry reference (`NAME@champion`,
`NAME@3`), copies its files (each checked against the signed manifest on the way), and signs
the copy in the OpenSSF model-signing format (model_signature.py). A folder it cannot create
or write is one error line; an export that fails leaves no half-written folder behind.

Must never leave a partial export looking complete, or follow a path out of the destination.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gridpoint.errors import ArtifactError, in_words
from gridpoint.node.artifacts.model_signature import sign_folder
from gridpoint.node.artifacts.registry import Registry, is_reference
from gridpoint.node.artifacts.store import Artifact, ArtifactStore
from gridpoint.node.home import NodeHome

__all__ = ["Exported", "export_model"]


@dataclass(frozen=True)
class Exported:
    """A finished export: the artifact, where it went, and the version a reference named."""

    artifact: Artifact
    path: Path
    ref: str | None


def export_model(
    home: NodeHome, artifacts: ArtifactStore, registry: Registry, ref: str, dest: Path
) -> Exported:
    """Copies the model ref names into dest (new or empty) and signs it there."""
    version = registry.resolve(ref) if is_reference(ref) else None
    artifact = version.artifact if version else artifacts.get(ref)
    fresh = not dest.exists()
    if not fresh and (not dest.is_dir() or any(dest.iterdir())):
        raise ArtifactError(f"{dest} already exists and is not an empty folder")
    try:
        try:
            artifacts.export(artifact.id, dest)
        except OSError as exc:
            raise ArtifactError(f"cannot write the model to {dest}: {in_words(exc)}") from None
        sign_folder(home, dest)
    except BaseException:
        _undo(dest, fresh)
        raise
    return Exported(artifact, dest, version.ref if version else None)


def _undo(dest: Path, fresh: bool) -> None:
    """Removes what a failed export wrote: the folder it made, or all it put in the empty one."""
    if fresh:
        shutil.rmtree(dest, ignore_errors=True)
    elif dest.is_dir():
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
