"""Lineage and the image size bucket: the record schema change, old records still valid."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, inspect, select

from gridpoint.errors import RecordError
from gridpoint.node.catalog import sign_record
from gridpoint.node.protocol.serde import decode_record, encode_record
from gridpoint.node.store.models import PARENTS, RECORDS
from gridpoint.node.store.sql_rows import record_row
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.schema import TaskDescriptor, record_from_json, record_to_json, validate_record
from gridpoint.schema.validation import MAX_PARENTS
from gridpoint.schema.vocabulary import image_size_bucket
from tests.helpers import MakeHome, make_record

PARENT = "cd" * 32
MIGRATIONS = Path(__file__).resolve().parents[2] / "node" / "store" / "migrations"
#: SHA-256 of encode_record(make_record()) as the schema wrote it before parents and the
#: image size bucket existed: an old record keeps its bytes, so its id and signature.
_OLD_BYTES_SHA256 = "cb6cbcfe97df8374044ff6f65a4dd65ad0acbbb398458fd097f626801f28bf60"


def test_a_record_without_parents_serializes_to_its_old_signed_bytes() -> None:
    assert hashlib.sha256(encode_record(make_record())).hexdigest() == _OLD_BYTES_SHA256


def test_parents_and_the_image_bucket_travel_through_wire_and_json() -> None:
    record = replace(
        make_record(),
        parents=(PARENT, "ef" * 32),
        task=TaskDescriptor(
            type="image-classification", num_labels=3, size_bucket="<1k", image_size_bucket="64-224"
        ),
    )

    assert decode_record(encode_record(record)) == record
    assert record_from_json(record_to_json(record)) == record
    assert encode_record(record) != encode_record(make_record())


@pytest.mark.parametrize(
    ("parents", "message"),
    [
        (("not-a-record-id",), r"parents\[0\]: 'not-a-record-id' is not a record id"),
        ((PARENT.upper(),), r"parents\[0\]"),
        ((PARENT, PARENT), "appears twice"),
        (tuple(f"{i:064x}" for i in range(MAX_PARENTS + 1)), "more than the limit"),
    ],
)
def test_bad_parents_are_refused_with_the_field_named(
    parents: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RecordError, match=message):
        validate_record(replace(make_record(), parents=parents))


def test_an_unknown_image_bucket_is_refused() -> None:
    record = replace(
        make_record(), task=TaskDescriptor(type="x", size_bucket="<1k", image_size_bucket="huge")
    )
    with pytest.raises(RecordError, match="task.image_size_bucket"):
        validate_record(record)


@pytest.mark.parametrize(
    ("sizes", "bucket"),
    [
        ([], ""),
        ([(32, 32), (40, 20), (600, 600)], "<64"),
        ([(64, 10)], "64-224"),
        ([(224, 224), (300, 200), (10, 10)], "224-512"),
        ([(1024, 768), (640, 480)], ">512"),
    ],
)
def test_image_size_bucket_takes_the_median_longer_side(
    sizes: list[tuple[int, int]], bucket: str
) -> None:
    assert image_size_bucket(sizes) == bucket


def test_the_store_keeps_parents_in_order(store: SqlStore, make_home: MakeHome) -> None:
    home = make_home("A")
    record = replace(make_record(), parents=("ef" * 32, PARENT))
    stored = sign_record(home.identity, record)

    store.add_records([stored])

    kept = store.get_record(stored.id)
    assert kept is not None and kept.record.parents == ("ef" * 32, PARENT)
    with store.engine.connect() as conn:
        rows = conn.execute(select(PARENTS.c.position, PARENTS.c.parent_id)).all()
    assert [tuple(r) for r in rows] == [(0, "ef" * 32), (1, PARENT)]


def test_a_store_made_before_lineage_migrates_and_keeps_its_records(
    tmp_path: Path, make_home: MakeHome
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sign_record(make_home("A").identity, make_record())
    row = record_row(old, datetime.now(UTC))
    engine = create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        # The row as a store at 0002 wrote it: only the columns that table had then.
        columns = {c["name"] for c in inspect(conn).get_columns("records")}
        assert "task_image_size_bucket" not in columns  # the column 0003 adds
        conn.execute(
            insert(RECORDS).values(seq=1, **{k: v for k, v in row.items() if k in columns})
        )
        conn.commit()
    engine.dispose()

    store = open_store(url)
    try:
        kept = store.get_record(old.id)
        assert kept is not None and kept.envelope == old.envelope
        assert kept.record.parents == () and kept.record.task.image_size_bucket == ""
        assert {"artifacts", "artifact_readers", "record_parents"} <= set(store.table_names())
    finally:
        store.close()
