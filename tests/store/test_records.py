"""The store contract, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlmodel import SQLModel

from gridpoint.errors import RequestError
from gridpoint.node.catalog import publish, sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.store import sql_store
from gridpoint.node.store.base import Peer, StoredRecord
from gridpoint.node.store.query_filter import parse_filter, parse_order_by
from gridpoint.node.store.sql_store import SqlStore, newest_revision, open_store
from gridpoint.schema import TaskDescriptor
from tests.helpers import MakeHome, make_record, signed_records


def test_migrations_produce_the_schema_the_models_describe(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert [d for d in diff if d[0] != "remove_table"] == []
    assert {"records", "record_params", "record_metrics", "peers", "private_runs"} <= set(
        store.table_names()
    )


def test_the_newest_revision_read_from_file_names_is_alembics_head() -> None:
    # The store skips alembic when the database is at newest_revision(): a migration whose
    # file name and revision disagree, or two heads, would leave databases unmigrated.
    scripts = ScriptDirectory(str(Path(sql_store.__file__).parent / "migrations"))
    assert scripts.get_heads() == [newest_revision()]
    for script in scripts.walk_revisions():
        assert Path(script.path).name.startswith(f"{script.revision}_")


def test_publishing_equal_content_twice_stores_one_record(
    store: SqlStore, make_home: MakeHome
) -> None:
    home: NodeHome = make_home("org")
    first = publish(store, home.identity, make_record(1))
    second = publish(store, home.identity, make_record(1))
    assert first.new and not second.new
    assert first.id == second.id
    assert store.count_records() == 1


def test_envelope_bytes_are_kept_verbatim(store: SqlStore, make_home: MakeHome) -> None:
    home: NodeHome = make_home("org")
    stored = sign_record(home.identity, make_record(2))
    store.add_records([stored])
    assert store.get_record(stored.id).envelope == stored.envelope  # type: ignore[union-attr]


def test_records_after_pages_in_storage_order_and_resumes(
    store: SqlStore, make_home: MakeHome
) -> None:
    home: NodeHome = make_home("org")
    records = signed_records(home, 7)
    store.add_records(records)
    seen, cursor, has_more = [], "", True
    while has_more:
        page = store.records_after(cursor, 3)
        seen += page.envelopes
        cursor, has_more = page.next_cursor, page.has_more
    assert seen == [r.envelope for r in records]
    assert store.records_after(cursor, 3).envelopes == []
    with pytest.raises(RequestError):
        store.records_after("not-a-cursor", 3)


def test_sync_page_and_cursor_are_stored_together(store: SqlStore, make_home: MakeHome) -> None:
    home: NodeHome = make_home("org")
    store.add_peer(Peer("a" * 40, "127.0.0.1:1", "peer", "ff", b"pem", datetime.now(UTC)))
    records = signed_records(home, 3)
    result = store.store_sync_page("a" * 40, [*records, records[0]], "42")
    again = store.store_sync_page("a" * 40, records, "43")
    assert (result.new, result.duplicates) == (3, 1)
    assert (again.new, again.duplicates) == (0, 3)
    assert store.get_peer("a" * 40).sync_cursor == "43"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.accuracy > 0.8", {3, 4}),
        ("metrics.accuracy > 0.6 and params.learning_rate < 1e-4", {2, 3}),
        ("params.optimizer = 'sgd' or task.type = 'causal-lm'", {0, 4}),
        ("model.base LIKE 'roberta%'", {1}),
        ("params.batch_size IN (32, 48)", {1, 2, 4}),
        ("task.type != 'text-classification'", {4}),
        ('task.type = "x\'; DROP TABLE records; --"', set()),
    ],
)
def test_query_filters_by_indexed_fields(
    store: SqlStore, make_home: MakeHome, text: str, expected: set[int]
) -> None:
    home: NodeHome = make_home("org")
    specs: list[dict[str, Any]] = [
        {"accuracy": 0.5, "learning_rate": 3e-5},
        {"accuracy": 0.6, "learning_rate": 1e-3, "base": "roberta-base"},
        {"accuracy": 0.7, "learning_rate": 5e-5},
        {"accuracy": 0.9, "learning_rate": 2e-5},
        {"accuracy": 0.95, "learning_rate": 2e-3, "task_type": "causal-lm"},
    ]
    records = [sign_record(home.identity, make_record(i, **spec)) for i, spec in enumerate(specs)]
    optimizer_sgd = make_record(0, **specs[0])
    records[0] = sign_record(
        home.identity,
        dataclasses.replace(
            optimizer_sgd,
            hyperparameters={**optimizer_sgd.hyperparameters, "optimizer": "sgd"},
        ),
    )
    store.add_records(records)
    found = store.query(parse_filter(text), limit=100)
    assert {next(i for i, r in enumerate(records) if r.id == f.id) for f in found} == expected
    assert store.count_records() == 5


def test_query_orders_and_limits(store: SqlStore, make_home: MakeHome) -> None:
    home: NodeHome = make_home("org")
    store.add_records(signed_records(home, 10))
    found = store.query(None, limit=3, order_by=parse_order_by("metrics.accuracy desc"))
    values = [f.record.metrics["accuracy"] for f in found]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert values[0] == max(r.record.metrics["accuracy"] for r in store.query(None, limit=100))


def test_query_stops_before_its_byte_budget(store: SqlStore, make_home: MakeHome) -> None:
    home: NodeHome = make_home("org")
    store.add_records(signed_records(home, 10))
    every = store.query(None, limit=100)
    sizes = [len(f.envelope) for f in every]
    # A budget that holds the first three envelopes and not the fourth.
    within = store.query(None, limit=100, max_bytes=sum(sizes[:4]) - 1)
    assert [f.id for f in within] == [f.id for f in every[:3]]
    assert store.query(None, limit=100, max_bytes=sizes[0] - 1) == []


def test_peers_are_added_updated_listed_and_removed(store: SqlStore) -> None:
    peer = Peer("b" * 40, "127.0.0.1:1", "B", "aa", b"pem", datetime.now(UTC))
    store.add_peer(peer)
    store.store_sync_page(peer.node_id, [], "7")
    store.add_peer(Peer("b" * 40, "127.0.0.1:2", "B", "aa", b"pem2", datetime.now(UTC)))
    [listed] = store.list_peers()
    assert (listed.address, listed.cert_pem, listed.sync_cursor) == ("127.0.0.1:2", b"pem2", "7")
    assert store.remove_peer(peer.node_id) and not store.remove_peer(peer.node_id)
    assert store.list_peers() == []


def test_reopening_an_existing_store_keeps_its_records(db_url: str, make_home: MakeHome) -> None:
    home: NodeHome = make_home("org")
    first = open_store(db_url)
    first.add_records(signed_records(home, 2))
    first.close()
    second = open_store(db_url)
    assert second.count_records() == 2
    second.close()


def test_ordering_by_a_metric_puts_records_without_it_last_and_keeps_the_filter(
    store: SqlStore, make_home: MakeHome
) -> None:
    home: NodeHome = make_home("org")
    with_metric = signed_records(home, 6)
    base = make_record(100, accuracy=0.99)
    without = sign_record(home.identity, type(base)(**{**base.__dict__, "metrics": {"f1": 0.5}}))
    other_task = sign_record(home.identity, make_record(101, task_type="causal-lm", accuracy=0.999))
    store.add_records([without, *with_metric, other_task])
    order = parse_order_by("metrics.accuracy desc")
    found = store.query(parse_filter("task.type = 'text-classification'"), limit=10, order_by=order)
    values = [f.record.metrics.get("accuracy") for f in found]
    assert values[:-1] == sorted((r.record.metrics["accuracy"] for r in with_metric), reverse=True)
    assert values[-1] is None and found[-1].id == without.id
    assert other_task.id not in {f.id for f in found}
    top = store.query(None, limit=2, order_by=parse_order_by("metrics.accuracy asc"))
    assert [t.record.metrics["accuracy"] for t in top] == sorted(
        r.record.metrics["accuracy"] for r in with_metric
    )[:2]


def test_records_without_the_sorted_metric_follow_unless_the_filter_compares_that_metric(
    store: SqlStore, make_home: MakeHome
) -> None:
    home: NodeHome = make_home("org")
    base = make_record(0, accuracy=0.9)
    kept = sign_record(home.identity, base)
    without = sign_record(
        home.identity,
        replace(make_record(1, task_type="causal-lm"), metrics={"f1": 0.5}),
    )
    store.add_records([without, kept])
    order = parse_order_by("metrics.accuracy desc")

    either = store.query(
        parse_filter("metrics.accuracy > 0.5 or task.type = 'causal-lm'"), limit=10, order_by=order
    )
    compared = store.query(
        parse_filter("metrics.accuracy != 0.1 and task.type != 'x'"), limit=10, order_by=order
    )
    both_branches = store.query(
        parse_filter("metrics.accuracy > 0.5 or metrics.accuracy < 0.1"), limit=10, order_by=order
    )

    assert [r.id for r in either] == [kept.id, without.id]
    assert [r.id for r in compared] == [kept.id]
    assert [r.id for r in both_branches] == [kept.id]


def test_a_sorted_answer_that_walks_many_windows_is_the_full_sort_of_the_matches(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: 1,200 records, accuracy in 40 values (ties at every window edge); one in
    # seven matches, so the answer needs the walk's first windows and part of a later one.
    home: NodeHome = make_home("org")
    records = [
        sign_record(
            home.identity,
            make_record(
                i,
                accuracy=round(0.5 + (i * 7 % 40) / 100, 2),
                task_type="causal-lm" if i % 7 == 0 else "summarization",
            ),
        )
        for i in range(1200)
    ]
    store.add_records(records)
    seq = {r.id: i for i, r in enumerate(records)}  # stored in this order
    matches = [r for r in records if r.record.task.type == "causal-lm"]

    # Execute
    found = store.query(
        parse_filter("task.type = 'causal-lm' and metrics.accuracy >= 0.55"),
        limit=150,
        order_by=parse_order_by("metrics.accuracy desc"),
    )
    ascending = store.query(
        parse_filter("task.type = 'causal-lm'"),
        limit=150,
        order_by=parse_order_by("metrics.accuracy asc"),
    )
    most = {
        limit: store.query(
            parse_filter("task.type != 'causal-lm'"),
            limit=limit,
            order_by=parse_order_by("metrics.accuracy desc"),
        )
        for limit in (64, 100, 150, 333, 1000)  # window edges at other rows
    }

    # Assert: value order, ties by storage order, nothing skipped or repeated.
    def by(r: Any, sign: int) -> tuple[float, int]:
        return (sign * r.record.metrics["accuracy"], seq[r.id])

    expected = sorted(
        (r for r in matches if r.record.metrics["accuracy"] >= 0.55), key=lambda r: by(r, -1)
    )
    assert [r.id for r in found] == [r.id for r in expected][:150]
    assert [r.id for r in ascending] == [r.id for r in sorted(matches, key=lambda r: by(r, 1))][
        :150
    ]
    rest = [r for r in records if r.record.task.type != "causal-lm"]
    for limit, answer in most.items():
        assert [r.id for r in answer] == [r.id for r in sorted(rest, key=lambda r: by(r, -1))][
            :limit
        ]


def _one_in_thirty(home: NodeHome) -> list[StoredRecord]:
    """1,500 records, accuracies scrambled, one in 30 of them a causal-lm task."""
    return [
        sign_record(
            home.identity,
            make_record(
                i,
                accuracy=(i * 7919 % 1500) / 1500,
                task_type="causal-lm" if i % 30 == 0 else "summarization",
            ),
        )
        for i in range(1500)
    ]


def test_a_sparse_sorted_answer_on_postgresql_is_read_in_windows_sized_by_its_matches(
    pg_url: str, make_home: MakeHome
) -> None:
    # Prepare: 1,500 records, accuracies scrambled, one in 30 of a task type: an answer of
    # 20 needs about 600 rows of the walk. Every statement the walk sends reads the metrics.
    store = open_store(pg_url)
    home: NodeHome = make_home("org")
    records = _one_in_thirty(home)
    store.add_records(records)
    sent: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))

    # Execute
    found = store.query(
        parse_filter("task.type = 'causal-lm'"),
        limit=20,
        order_by=parse_order_by("metrics.accuracy desc"),
    )
    store.close()

    # Assert: the right answer, from two windows (a window is its edge and its matches): the
    # second as long as the first window's share of matches says; growing fourfold, three.
    expected = sorted(
        (r for r in records if r.record.task.type == "causal-lm"),
        key=lambda r: -r.record.metrics["accuracy"],
    )
    assert [r.id for r in found] == [r.id for r in expected][:20]
    assert len([s for s in sent if "record_metrics" in s]) == 4


def test_a_sorted_answer_walked_while_records_are_stored_is_the_store_as_the_query_found_it(
    pg_url: str, make_home: MakeHome
) -> None:
    # Prepare: the records of the test above, and a second store that adds records once the
    # walk has sent its first statement: one ahead of the first window's edge (accuracy 1.0),
    # and non-matching ones inside the window that would push its last rows out of it.
    store, other = open_store(pg_url), open_store(pg_url)
    home: NodeHome = make_home("org")
    records = _one_in_thirty(home)
    store.add_records(records)
    late = [
        sign_record(home.identity, make_record(1500, accuracy=1.0, task_type="causal-lm")),
        *(sign_record(home.identity, make_record(1501 + i, accuracy=0.9)) for i in range(40)),
    ]
    walked: list[str] = []

    def store_late_records(*args: Any) -> None:
        if "record_metrics" in args[2]:
            walked.append(args[2])
            if len(walked) == 2:
                other.add_records(late)

    event.listen(store.engine, "before_cursor_execute", store_late_records)

    # Execute
    found = store.query(
        parse_filter("task.type = 'causal-lm'"),
        limit=40,
        order_by=parse_order_by("metrics.accuracy desc"),
    )
    store.close()
    other.close()

    # Assert: the answer from the records as they were when the query began, each once.
    expected = sorted(
        (r for r in records if r.record.task.type == "causal-lm"),
        key=lambda r: -r.record.metrics["accuracy"],
    )
    assert [r.id for r in found] == [r.id for r in expected][:40]


def test_image_records_are_found_by_their_image_size_bucket(
    store: SqlStore, make_home: MakeHome
) -> None:
    home: NodeHome = make_home("org")
    text = make_record(0)
    image = replace(
        make_record(1, task_type="image-classification"),
        task=TaskDescriptor(type="image-classification", num_labels=2, size_bucket="<1k",
                            image_size_bucket="64-224"),
    )  # fmt: skip
    stored = [sign_record(home.identity, r) for r in (text, image)]
    store.add_records(stored)
    found = store.query(parse_filter("task.image_size_bucket = '64-224'"), limit=10)
    assert [f.id for f in found] == [stored[1].id]
    assert found[0].record.task.image_size_bucket == "64-224"
