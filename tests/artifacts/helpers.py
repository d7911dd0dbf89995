"""Helpers of the artifact tests: model-like folders, stores on a home, digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gridpoint.node.artifacts import ArtifactStore, NewArtifact
from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import SqlStore, open_store


def model_folder(path: Path, size: int = 3 * 1024 * 1024 + 17, seed: int = 0) -> Path:
    """A folder shaped like a saved model: a config, a weights file of `size` random-looking
    bytes (several chunks and a short last one) and a nested tokenizer file."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(f'{{"model_type": "bert", "seed": {seed}}}\n')
    block = hashlib.sha256(str(seed).encode()).digest() * 32768  # 1 MiB
    with (path / "model.safetensors").open("wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)
    (path / "tokenizer").mkdir()
    (path / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return path


def random_folder(path: Path, size: int) -> Path:
    path.mkdir(parents=True)
    with (path / "model.safetensors").open("wb") as out:
        left = size
        while left > 0:
            out.write(os.urandom(min(left, 1 << 20)))
            left -= 1 << 20
    (path / "config.json").write_text("{}\n")
    return path


def info(
    group: str = "study-canary-7f3a", readers: tuple[str, ...] = (), **kw: object
) -> NewArtifact:
    values: dict[str, object] = {
        "kind": "trial",
        "record_id": "ab" * 32,
        "base_model": "bert-base-uncased",
        "method": "full",
        "group": group,
        "score": 0.5,
        "readers": readers,
    }
    values.update(kw)
    return NewArtifact(**values)  # type: ignore[arg-type]


def open_artifacts(home: NodeHome) -> tuple[SqlStore, ArtifactStore]:
    store = open_store(home.db_url())
    return store, ArtifactStore(home, store)


def folder_digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
