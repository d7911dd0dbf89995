"""The artifact store on SQLite and PostgreSQL: add, list, get by prefix, remove, export."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gridpoint.errors import ArtifactError, ArtifactNotFound
from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.artifacts.manifest import CHUNK_SIZE, decode_manifest
from gridpoint.node.protocol.envelope import verify_envelope
from gridpoint.node.store.sql_store import SqlStore
from tests.artifacts.helpers import folder_digests, info, model_folder
from tests.helpers import MakeHome


def test_add_keeps_a_copy_with_a_signed_manifest_of_every_chunk(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    source = model_folder(tmp_path / "m")
    artifacts = ArtifactStore(home, store)

    artifact = artifacts.add(source, info())

    assert folder_digests(artifacts.folder(artifact)) == folder_digests(source)
    assert [f.path for f in artifact.files] == [
        "config.json",
        "model.safetensors",
        "tokenizer/vocab.txt",
    ]
    weights = artifact.files[1]
    assert weights.size == 3 * CHUNK_SIZE + 17 and len(weights.chunks) == 4
    assert artifact.bytes == sum(f.size for f in artifact.files)
    assert artifact.author == home.identity.node_id and artifact.readers == ()
    verified = verify_envelope(
        artifact.envelope(),
        expected_type="gridpoint.v1.ArtifactManifest",
        is_trusted=lambda s: s == home.identity.node_id,
    )
    manifest = decode_manifest(verified.payload)
    assert (manifest.record_id, manifest.method, manifest.base_model) == (
        "ab" * 32,
        "full",
        "bert-base-uncased",
    )


def test_the_same_weights_get_the_same_id_on_every_node(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    a, b = make_home("A"), make_home("B")
    source = model_folder(tmp_path / "m")
    on_a = ArtifactStore(a, store).add(source, info())
    again = ArtifactStore(a, store).add(source, info())
    other_store = SqlStore(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        on_b = ArtifactStore(b, other_store).add(source, info())
    finally:
        other_store.close()

    assert on_a.id == again.id == on_b.id
    assert on_a.author != on_b.author
    assert len(ArtifactStore(a, store).list()) == 1


def test_list_get_by_prefix_and_remove(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    artifacts = ArtifactStore(home, store)
    added = [
        artifacts.add(model_folder(tmp_path / f"m{i}", size=1000, seed=i), info(group=g))
        for i, g in enumerate(["s1", "s1", "s2"])
    ]

    assert {a.id for a in artifacts.list()} == {a.id for a in added}
    assert {a.id for a in artifacts.list(group="s1")} == {a.id for a in added[:2]}
    assert artifacts.get(added[0].id[:10]).id == added[0].id
    with pytest.raises(ArtifactNotFound, match="no model"):
        artifacts.get("f" * 64)
    with pytest.raises(ArtifactNotFound, match="not an artifact id"):
        artifacts.get("../etc")
    # 17 ids hold two that share a first hex digit: that digit is an ambiguous prefix.
    firsts: dict[str, int] = {}
    for seed in range(3, 20):
        first = artifacts.add(model_folder(tmp_path / f"x{seed}", size=10, seed=seed), info()).id[0]
        firsts[first] = firsts.get(first, 0) + 1
        if firsts[first] == 2:
            break
    with pytest.raises(ArtifactError, match="ambiguous"):
        artifacts.get(first)
    for extra in artifacts.list(group="study-canary-7f3a"):
        artifacts.remove(extra.id)
    artifacts.remove(added[0].id[:12])
    assert {a.id for a in artifacts.list()} == {a.id for a in added[1:]}
    assert not artifacts.folder(added[0]).exists()


def test_export_writes_a_plain_folder_and_refuses_a_full_one(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    source = model_folder(tmp_path / "m")
    artifact = artifacts.add(source, info())

    out = artifacts.export(artifact.id[:8], tmp_path / "out")

    assert folder_digests(out) == folder_digests(source)
    with pytest.raises(ArtifactError, match="not an empty folder"):
        artifacts.export(artifact.id, tmp_path / "out")


def test_export_notices_a_damaged_stored_copy(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    artifact = artifacts.add(model_folder(tmp_path / "m"), info())
    with (artifacts.folder(artifact) / "model.safetensors").open("r+b") as f:
        f.seek(5)
        f.write(b"\xff")

    with pytest.raises(ArtifactError, match="damaged"):
        artifacts.export(artifact.id, tmp_path / "out")


def test_a_failure_midway_through_add_leaves_nothing(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    source = model_folder(tmp_path / "m")
    # Sorted after config.json and model.safetensors: those are copied before it fails.
    (source / "zz-weights.bin").symlink_to(tmp_path / "missing")

    with pytest.raises(ArtifactError, match="cannot copy the model file zz-weights.bin"):
        artifacts.add(source, info())

    assert artifacts.list() == []
    assert list(artifacts.root.iterdir()) == []


def test_temporary_folders_of_dead_processes_are_swept(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    artifacts = ArtifactStore(home, store)
    dead = artifacts.root / ".tmp-999999999-abc"
    (dead / "half").mkdir(parents=True)
    alive = artifacts.root / f".tmp-{os.getpid()}-abc"
    alive.mkdir()

    ArtifactStore(home, store)

    assert not dead.exists() and alive.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "weights"}, "kind must be"),
        ({"method": "qlora"}, "method must be"),
        ({"record_id": "not-an-id"}, "record id"),
        ({"base_model": "/home/alice/model"}, "public hub id"),
        ({"readers": ("alice",)}, "not a node id"),
    ],
)
def test_add_refuses_bad_metadata(
    store: SqlStore, make_home: MakeHome, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    with pytest.raises(ArtifactError, match=message):
        artifacts.add(model_folder(tmp_path / "m", size=10), info(**change))  # type: ignore[arg-type]
    assert artifacts.list() == []


def test_share_adds_a_reader_once(store: SqlStore, make_home: MakeHome, tmp_path: Path) -> None:
    artifacts = ArtifactStore(make_home("A"), store)
    artifact = artifacts.add(model_folder(tmp_path / "m", size=10), info())
    reader = "0" * 40
    artifacts.share(artifact.id[:6], reader)
    assert artifacts.share(artifact.id, reader).readers == (reader,)


def test_partial_downloads_left_for_a_week_are_swept(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    artifacts = ArtifactStore(home, store)
    old, recent = artifacts.root / ".partial" / ("a" * 64), artifacts.root / ".partial" / ("b" * 64)
    for partial in (old, recent):
        partial.mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"x" * 10)
    week_ago = time.time() - 8 * 86400
    for path in (old / "model.safetensors", old):
        os.utime(path, (week_ago, week_ago))

    ArtifactStore(home, store)

    assert not old.exists() and recent.exists()
