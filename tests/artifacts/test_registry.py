"""The model registry on SQLite and PostgreSQL: versions, references, aliases, protection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gridpoint.errors import ArtifactError, ConfigError, ProtectedAlias, RegistryError
from gridpoint.node.artifacts import Artifact, ArtifactStore
from gridpoint.node.artifacts.keep import apply_retention
from gridpoint.node.artifacts.registry import Registry
from gridpoint.node.artifacts.service import ArtifactService
from gridpoint.node.config import RegistryConfig
from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import SqlStore
from gridpoint.v1 import artifacts_pb2
from tests.artifacts.helpers import info, model_folder
from tests.helpers import MakeHome


def held(store: SqlStore, home: NodeHome, tmp_path: Path, n: int) -> list[Artifact]:
    artifacts = ArtifactStore(home, store)
    return [
        artifacts.add(
            model_folder(tmp_path / f"m{i}", size=1000, seed=i),
            info(score=0.5 + i / 100, metric="accuracy"),
        )
        for i in range(n)
    ]


def registry_of(store: SqlStore, home: NodeHome, **config: object) -> Registry:
    return Registry(
        ArtifactStore(home, store),
        store,
        RegistryConfig(**config),  # type: ignore[arg-type]
        home.identity.node_id,
    )


def two_versions(
    store: SqlStore, home: NodeHome, tmp_path: Path
) -> tuple[Registry, Artifact, Artifact]:
    """A registry holding two models as versions 1 and 2 of "sentiment"."""
    a, b = held(store, home, tmp_path, 2)
    registry = registry_of(store, home)
    registry.register("sentiment", a.id)
    registry.register("sentiment", b.id)
    return registry, a, b


def test_versions_are_numbered_per_name_and_a_number_is_never_given_twice(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    a, b, c = held(store, home, tmp_path, 3)
    registry = registry_of(store, home)

    first, created = registry.register("sentiment", a.id[:10])
    again, created_again = registry.register("sentiment", a.id)
    second, _ = registry.register("sentiment", b.id)
    other, _ = registry.register("spam", b.id)
    registry.deregister("sentiment", 2)
    third, _ = registry.register("sentiment", c.id)

    assert (first.version, created, again.version, created_again) == (1, True, 1, False)
    assert (second.version, other.version, third.version) == (2, 1, 3)
    assert [(v.name, v.version, v.artifact.id) for v in registry.versions()] == [
        ("sentiment", 1, a.id),
        ("sentiment", 3, c.id),
        ("spam", 1, b.id),
    ]
    assert registry.versions("sentiment")[0].artifact.metric == "accuracy"


def test_references_name_a_version_by_alias_number_or_latest(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    registry, a, b = two_versions(store, make_home("A"), tmp_path)
    registry.set_alias("sentiment", "staging", 1)

    assert registry.artifact("sentiment@staging").id == a.id
    assert registry.artifact("sentiment@2").id == b.id
    assert registry.artifact("sentiment@v2").id == b.id
    assert registry.artifact("sentiment@latest").id == b.id
    assert registry.artifact(b.id[:12]).id == b.id
    with pytest.raises(
        RegistryError, match="sentiment has no alias champion .its aliases: staging"
    ):
        registry.resolve("sentiment@champion")
    with pytest.raises(RegistryError, match="no model is registered as nope"):
        registry.resolve("nope@1")
    with pytest.raises(RegistryError, match="sentiment has no version 7"):
        registry.resolve("sentiment@7")


def test_a_protected_alias_moves_and_goes_only_with_force(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    registry, *_ = two_versions(store, make_home("A"), tmp_path)

    first = registry.set_alias("sentiment", "champion", 1)
    with pytest.raises(ProtectedAlias, match="pass --force to move it to version 2"):
        registry.set_alias("sentiment", "champion", 2)
    unchanged = registry.resolve("sentiment@champion").version
    moved = registry.set_alias("sentiment", "champion", 2, force=True)
    registry.set_alias("sentiment", "staging", 1)
    free = registry.set_alias("sentiment", "staging", 2)
    with pytest.raises(ProtectedAlias, match="pass --force to remove it"):
        registry.remove_alias("sentiment", "champion")
    removed = registry.remove_alias("sentiment", "champion", force=True)

    assert (first.previous, first.version, first.protected) == (None, 1, True)
    assert unchanged == 1
    assert (moved.previous, moved.version) == (1, 2)
    assert (free.previous, free.version, free.protected) == (1, 2, False)
    assert (removed.previous, removed.version, removed.event) == (2, None, "alias_removed")
    assert registry.versions("sentiment")[1].aliases == ("staging",)


def test_protection_follows_the_config(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    a, b = held(store, home, tmp_path, 2)
    registry = registry_of(store, home, protected_aliases=("prod",))
    registry.register("m", a.id)
    registry.register("m", b.id)
    registry.set_alias("m", "champion", 1)
    registry.set_alias("m", "prod", 1)

    registry.set_alias("m", "champion", 2)
    with pytest.raises(ProtectedAlias):
        registry.set_alias("m", "prod", 2)


def test_a_registered_model_is_neither_removed_nor_given_up_by_retention(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    worst, middle, best = held(store, home, tmp_path, 3)
    artifacts = ArtifactStore(home, store)
    registry = registry_of(store, home)
    registry.register("sentiment", worst.id)
    registry.set_alias("sentiment", "champion", 1)

    with pytest.raises(ArtifactError, match="is sentiment version 1: .* deregister sentiment 1"):
        artifacts.remove(worst.id)
    with pytest.raises(RegistryError, match="sentiment@1 is sentiment@champion"):
        registry.deregister("sentiment", 1)
    removed = apply_retention(artifacts, "study-canary-7f3a", 1, "maximize")

    assert removed == [middle.id]
    assert {a.id for a in artifacts.list()} == {worst.id, best.id}


def test_malformed_or_unknown_names_are_one_clear_error(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    (a,) = held(store, home, tmp_path, 1)
    registry = registry_of(store, home)
    registry.register("m", a.id)
    cases: list[tuple[Callable[[Registry], object], str]] = [
        (lambda r: r.register("bad name", "ab"), "is not a model name"),
        (lambda r: r.register("x" * 101, "ab"), "is not a model name"),
        (lambda r: r.set_alias("m", "Champion", 1), "is not an alias"),
        (lambda r: r.set_alias("m", "v2", 1), "not a version like 'v3'"),
        (lambda r: r.set_alias("m", "latest", 1), "not 'latest'"),
        (lambda r: r.set_alias("m", "staging", 9), "m has no version 9"),
        (lambda r: r.remove_alias("m", "staging"), "m has no alias staging"),
    ]

    for call, message in cases:
        with pytest.raises(RegistryError, match=message):
            call(registry)
    assert [(v.version, v.aliases) for v in registry.versions()] == [(1, ())]


def test_registry_names_never_reach_a_peer(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    home, peer = make_home("A"), make_home("B")
    artifacts = ArtifactStore(home, store)
    shared = artifacts.add(
        model_folder(tmp_path / "m", size=1000),
        info(readers=(peer.identity.node_id,)),
    )
    registry = registry_of(store, home)
    registry.register("zqcanaryname", shared.id)
    registry.set_alias("zqcanaryname", "zqcanaryalias", 1)
    service = ArtifactService(artifacts, 4 * 1024 * 1024)

    answers = [
        service.list(peer.identity.node_id, artifacts_pb2.ListArtifactsRequest()),
        service.get_manifest(
            peer.identity.node_id, artifacts_pb2.GetManifestRequest(artifact_id=shared.id)
        ),
    ]

    assert len(answers[0].manifests) == 1  # type: ignore[attr-defined]
    for answer in answers:
        assert b"zqcanary" not in answer.SerializeToString()


def test_the_config_refuses_a_protected_alias_that_cannot_exist(
    make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    store = SqlStore(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with pytest.raises(ConfigError, match="protected_aliases: 'Prod' is not an alias"):
            registry_of(store, home, protected_aliases=("Prod",))
    finally:
        store.close()
