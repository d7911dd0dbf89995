"""The store contract for kept models' rows (CatalogStore), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridpoint.node.store.base import CatalogStore, StoredArtifact

READER_A, READER_B = "a" * 40, "b" * 40


def row(
    artifact_id: str, *, group: str = "study-1", minutes: int = 0, **kw: object
) -> StoredArtifact:
    values: dict[str, object] = {
        "id": artifact_id,
        "kind": "trial",
        "record_id": None,
        "base_model": "bert-base-uncased",
        "method": "full",
        "group": group,
        "score": 0.5,
        "author": "c" * 40,
        "manifest": b"\x00signed\xffbytes",
        "size": 123,
        "created_at": datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        "readers": (),
    }
    values.update(kw)
    return StoredArtifact(**values)  # type: ignore[arg-type]


def test_an_artifact_row_comes_back_as_stored_and_adding_it_again_only_adds_readers(
    store: CatalogStore,
) -> None:
    first = row("1" * 64, readers=(READER_B,), score=None, record_id="ab" * 32)

    added = store.add_artifact(first)
    again = store.add_artifact(row("1" * 64, group="other", readers=(READER_A, READER_B)))

    assert (added, again) == (True, False)
    [held] = store.find_artifacts("1" * 64)
    assert held == StoredArtifact(**{**first.__dict__, "readers": (READER_A, READER_B)})


def test_find_by_prefix_lists_newest_first_and_filters_by_group(store: CatalogStore) -> None:
    for i, (artifact_id, group) in enumerate([("ab01", "s1"), ("ab02", "s2"), ("cd03", "s1")]):
        store.add_artifact(row(artifact_id + "0" * 60, group=group, minutes=i))

    assert [a.id[:4] for a in store.find_artifacts("ab")] == ["ab01", "ab02"]
    assert [a.id[:4] for a in store.find_artifacts("ab", limit=1)] == ["ab01"]
    assert store.find_artifacts("ef") == [] and store.find_artifacts("a%") == []
    assert [a.id[:4] for a in store.list_artifacts()] == ["cd03", "ab02", "ab01"]
    assert [a.id[:4] for a in store.list_artifacts(group="s1")] == ["cd03", "ab01"]


def test_readers_are_kept_once_and_removing_forgets_the_artifact_and_its_readers(
    store: CatalogStore,
) -> None:
    store.add_artifact(row("2" * 64))
    store.add_artifact_readers("2" * 64, [READER_B, READER_A, READER_B])
    store.add_artifact_readers("2" * 64, [READER_A])
    readers = store.find_artifacts("2" * 64)[0].readers

    removed, again = store.remove_artifact("2" * 64), store.remove_artifact("2" * 64)
    store.add_artifact(row("2" * 64))

    assert readers == (READER_A, READER_B)
    assert (removed, again) == (True, False)
    assert store.find_artifacts("2" * 64)[0].readers == ()
