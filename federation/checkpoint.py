"""The host's checkpoint of a federation: global model and round state after every round.

Two files in the federation's folder, each written whole to a temporary name, flushed to
disk and renamed into place, so a crash (kill -9 included) leaves either the previous
checkpoint or the new one, never half of one: `global-NNNN.pt` (the global arrays after
round NNNN) and `checkpoint.json` (the last completed round, the name of its arrays file,
and every round's journal event so far). The state file is renamed last: it names an
arrays file only once that file is complete. Older arrays files are removed after.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

__all__ = ["CHECKPOINT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint.json"


@dataclass(frozen=True)
class Checkpoint:
    """The state after the last completed round."""

    round: int
    arrays: ArrayRecord
    #: Every completed round's journal event, in order.
    events: list[dict[str, Any]]


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def save_checkpoint(
    folder: Path, server_round: int, arrays: ArrayRecord, events: list[dict[str, Any]]
) -> None:
    """Checkpoints the state after `server_round` (atomic; see the module docstring)."""
    import io

    import torch

    name = f"global-{server_round:04d}.pt"
    buffer = io.BytesIO()
    torch.save(arrays.to_torch_state_dict(), buffer)
    _write_atomically(folder / name, buffer.getvalue())
    state = {"round": server_round, "arrays": name, "events": events}
    _write_atomically(folder / CHECKPOINT, json.dumps(state).encode())
    for old in folder.glob("global-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The last checkpoint in folder, or None when no round was completed there."""
    import torch

    path = folder / CHECKPOINT
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    tensors = torch.load(folder / str(state["arrays"]), weights_only=True)
    return Checkpoint(int(state["round"]), ArrayRecord(tensors), list(state["events"]))
