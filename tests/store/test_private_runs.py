"""Private runs: kept with their published record in one write, read back as they were given."""

from __future__ import annotations

from datetime import UTC, datetime

from gridpoint.node.store.base import ModelRef, NotPublished, PrivateRun, RunDetail
from gridpoint.node.store.sql_store import SqlStore
from gridpoint.schema import CurvePoint, SearchDimension, TaskDescriptor
from tests.helpers import MakeHome, signed_records

TASK = TaskDescriptor("text-classification", num_labels=2, size_bucket="<1k", language="en")


def _detail(state: str, kind: str = "trial") -> RunDetail:
    return RunDetail(
        state=state,
        kind=kind,
        params={"learning_rate": 3e-4, "optimizer": "adamw", "layers": 2, "fp16": True},
        search_space=(SearchDimension("learning_rate", "float", 1e-5, 1e-2, log=True),),
        curve=(CurvePoint(10, "accuracy", 0.6), CurvePoint(20, "accuracy", 0.8)),
        metrics={"accuracy": 0.8},
        objective_metric="accuracy",
        objective_direction="maximize",
        task=TASK,
        model=ModelRef("bert-base-uncased", "bert", 110_000_000),
        pipeline="private_pipeline:load",
        not_published=(NotPublished("param", "data_path", "not in the vocabulary"),),
        finished_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        extra={"host": "gpu-7"},
    )


def test_a_run_and_its_record_are_stored_together_and_read_back_as_given(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare
    [record] = signed_records(make_home("A"), 1)
    published = PrivateRun("study-a", 0, _detail("complete"), record_id=record.id)
    private = PrivateRun("study-a", 1, _detail("failed"))
    federated = PrivateRun("fed-x", 1, _detail("complete", kind="federated"))
    other = PrivateRun("study-b", 0, _detail("pruned"))
    # Execute
    first = store.add_run(published, record)
    for run in (private, federated, other):
        store.add_run(run)
    # Assert: both parts stored; each read returns the runs in the order stored.
    assert (first.new, store.get_record(record.id)) == (1, record)
    study_a = store.list_private_runs("study-a")
    assert [(r.trial_number, r.record_id) for r in study_a] == [(0, record.id), (1, None)]
    assert [r.detail for r in study_a] == [published.detail, private.detail]
    assert [r.study_name for r in store.list_private_runs()] == ["study-a", "study-a", "study-b"]
    assert store.list_private_runs("fed-x") == []
    assert [r.detail.kind for r in store.list_private_runs("fed-x", kind="federated")] == [
        "federated"
    ]
    assert len(store.list_private_runs(kind=None)) == 4


def test_a_record_stored_again_with_another_run_is_one_record(
    store: SqlStore, make_home: MakeHome
) -> None:
    [record] = signed_records(make_home("A"), 1)
    store.add_run(PrivateRun("s", 0, _detail("complete"), record_id=record.id), record)
    again = store.add_run(PrivateRun("s", 1, _detail("complete"), record_id=record.id), record)
    assert (again.new, again.duplicates) == (0, 1)
    assert store.count_records() == 1 and len(store.list_private_runs("s")) == 2
