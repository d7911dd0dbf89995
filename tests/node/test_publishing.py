"""The publishing service: every source's private run becomes one signed record and one private
run, stored in one transaction, and nothing private reaches the signed bytes.

In-process, on SQLite and PostgreSQL (the db_url fixture).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grimp
import pytest

from gridpoint.errors import RecordError, StoreError
from gridpoint.integrations.foreign_run import ForeignRun, ModelRef
from gridpoint.integrations.sink import IMPORTED, PRESENT, HomeSink
from gridpoint.node.catalog import sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import own_study_names, pseudonym
from gridpoint.node.publishing.anonymize import anonymize
from gridpoint.node.publishing.service import PublishingService
from gridpoint.node.store.base import NotPublished, PrivateRun, RunDetail
from gridpoint.node.store.query_filter import parse_filter
from gridpoint.node.store.run_detail import detail_from_text, detail_text
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.schema import CurvePoint, SearchDimension, TaskDescriptor, record_to_json
from tests.helpers import ROOT, MakeHome, make_record

CANARY = "zqcanarypub"
TASK = TaskDescriptor("text-classification", num_labels=2, size_bucket="<1k", language="en")


@pytest.fixture
def home(make_home: MakeHome) -> NodeHome:
    node: NodeHome = make_home("A")
    return node


@pytest.fixture
def node_store(db_url: str) -> Iterator[SqlStore]:
    store = open_store(db_url)
    yield store
    store.close()


def _trial(number: int = 0, **detail: object) -> PrivateRun:
    fields: dict[str, object] = {
        "state": "complete",
        "params": {"learning_rate": 3e-4, "batch_size": 16, f"{CANARY}_param": 7},
        "search_space": (SearchDimension("learning_rate", "float", 1e-5, 1e-3, log=True),),
        "curve": (CurvePoint(10, "accuracy", 0.7), CurvePoint(10, f"{CANARY}_metric", 3.0)),
        "metrics": {"accuracy": 0.75, f"{CANARY}_metric": 3.0},
        "objective_metric": "accuracy",
        "objective_direction": "maximize",
        "task": TASK,
        "model": ModelRef(public_id=f"/home/{CANARY}/model", family="bert", num_parameters=99),
        "study_file": f"/home/{CANARY}/study.toml",
        "pipeline": f"{CANARY}_pipeline:load",
        "extra": {"output_dir": f"/srv/{CANARY}"},
    }
    return PrivateRun(f"{CANARY}-study", number, RunDetail(**fields | detail))  # type: ignore[arg-type]


def _counts(store: SqlStore) -> tuple[int, int]:
    return store.count_records(), len(store.list_private_runs(kind=None))


def test_a_run_is_published_and_kept_privately_in_one_write(
    home: NodeHome, node_store: SqlStore
) -> None:
    # Prepare
    service = PublishingService(home, node_store)
    # Execute
    published = service.publish(_trial())
    again = service.publish(_trial())
    # Assert: one record, found by the owner's study name; the private run points at it.
    assert published.new and published.record_id is not None and not again.new
    where = own_study_names(parse_filter(f"study = '{CANARY}-study'"), home.secret)
    [found] = node_store.query(where, limit=10)
    assert found.id == published.record_id
    assert found.record.study == pseudonym(home.secret, "study", f"{CANARY}-study")
    assert found.record.hyperparameters == {"learning_rate": 3e-4, "batch_size": 16}
    assert found.record.model.base == "" and found.record.model.family == "bert"
    [private, _] = node_store.list_private_runs(f"{CANARY}-study")
    assert private.record_id == published.record_id
    assert private.detail.pipeline == f"{CANARY}_pipeline:load"
    assert private.detail.curve == _trial().detail.curve
    assert private.detail.search_space == _trial().detail.search_space
    assert private.detail.model == _trial().detail.model


def test_a_private_part_the_database_refuses_stores_no_record(
    home: NodeHome, node_store: SqlStore
) -> None:
    # Prepare: a trial number no 64-bit column holds.
    service = PublishingService(home, node_store)
    # Execute
    with pytest.raises(StoreError, match="nothing was written"):
        service.publish(_trial(number=2**63))
    # Assert
    assert _counts(node_store) == (0, 0)


def test_a_record_the_database_refuses_stores_no_private_run(
    home: NodeHome, node_store: SqlStore
) -> None:
    # Prepare: a signed record whose signing time no 64-bit column holds.
    record = dataclasses.replace(sign_record(home.identity, make_record()), signed_at_ms=2**63)
    # Execute
    with pytest.raises(StoreError, match="nothing was written"):
        node_store.add_run(_trial(), record)
    # Assert
    assert _counts(node_store) == (0, 0)


def test_a_metric_outside_its_range_publishes_nothing_and_keeps_nothing(
    home: NodeHome, node_store: SqlStore
) -> None:
    service = PublishingService(home, node_store)
    for metrics in ({"accuracy": 1e300}, {"accuracy": 87.5}, {"eval_loss": -1.0}):
        with pytest.raises(RecordError, match="outside the range"):
            service.publish(_trial(metrics=metrics))
    assert _counts(node_store) == (0, 0)


def test_a_failure_that_says_nothing_of_the_hyperparameters_stays_private(
    home: NodeHome, node_store: SqlStore
) -> None:
    # Prepare
    service = PublishingService(home, node_store)
    error = f"FileNotFoundError: /home/{CANARY}/data.csv"
    # Execute
    private = service.publish(_trial(0, state="failed", error=error))
    diverged = service.publish(_trial(1, state="failed", error=error, failure="diverged"))
    # Assert
    assert private.record_id is None and diverged.record_id is not None
    [stored] = node_store.query(None, limit=10)
    assert stored.record.status == "failed" and stored.record.failure == "diverged"
    runs = node_store.list_private_runs(f"{CANARY}-study")
    assert [(r.trial_number, r.record_id) for r in runs] == [(0, None), (1, diverged.record_id)]
    assert all(r.detail.error == error for r in runs)


def test_no_canary_reaches_the_signed_bytes(home: NodeHome, node_store: SqlStore) -> None:
    # Prepare: every private field of every kind of run carries the canary.
    service = PublishingService(home, node_store)
    runs = [
        _trial(0),
        _trial(1, state="failed", error=f"{CANARY} error", failure="diverged"),
        _trial(2, source=f"mlflow:{CANARY}", extra={"run_name": CANARY}),
        PrivateRun(
            f"{CANARY}-federation",
            3,
            dataclasses.replace(_trial().detail, kind="federated", members=("a" * 40,)),
        ),
    ]
    # Execute
    for run in runs:
        service.publish(run)
    # Assert: the canary is in every private run and in no envelope.
    envelopes = [s.envelope for s in node_store.query(None, limit=10)]
    assert len(envelopes) == 4
    assert not [e for e in envelopes if CANARY.encode() in e.lower()]
    private = node_store.list_private_runs(kind=None)
    assert len(private) == 4 and all(CANARY in repr(r) for r in private)


def test_a_head_only_run_is_published_as_method_head_and_found_by_it(
    home: NodeHome, node_store: SqlStore
) -> None:
    # Prepare: trial 0 trained the head alone ([training] trainable = "head"), trial 1 all.
    service = PublishingService(home, node_store)
    head = ModelRef(public_id="bert-base-uncased", family="bert", num_parameters=99, head_only=True)
    # Execute
    published = service.publish(_trial(0, model=head))
    service.publish(_trial(1))
    # Assert: the record says what trained, a filter finds it, the private run keeps it.
    [found] = node_store.query(parse_filter("model.method = 'head'"), limit=10)
    assert found.id == published.record_id and found.record.model.method == "head"
    [full] = node_store.query(parse_filter("model.method = 'full'"), limit=10)
    assert full.id != found.id
    kept = {r.trial_number: r.detail.model for r in node_store.list_private_runs(f"{CANARY}-study")}
    assert kept[0] == head and not kept[1].head_only


def test_a_run_kept_before_head_only_training_was_recorded_publishes_as_full(
    home: NodeHome,
) -> None:
    # Prepare: a stored detail of the shape written before `head_only` existed.
    data = json.loads(detail_text(_trial().detail))
    del data["model"]["head_only"]
    # Execute
    older = detail_from_text(json.dumps(data))
    record = anonymize(
        PrivateRun("older", 0, older), secret=home.secret, policy=home.config.anonymizer
    )
    # Assert
    assert older.model == _trial().detail.model and record.model.method == "full"


def test_a_federated_run_is_published_through_the_service(
    home: NodeHome, db_url: str, tmp_path: Path
) -> None:
    # Prepare
    from gridpoint.federation.host import FederationResult, HostOptions, HostOutcome
    from gridpoint.federation.publish import publish_federation

    member = "b" * 40
    opts = HostOptions(
        federation=f"{CANARY}-fed", study=ROOT / "examples" / "tiny-study.toml", rounds=2,
        min_members=1, listen="127.0.0.1:0", lora=False, strategy="fedavg", round_timeout=30,
        params={}, db=db_url,
    )  # fmt: skip
    result = FederationResult(
        members=[member],
        train_metrics={1: {"accuracy": 0.6, "eval_loss": 0.9}, 2: {"accuracy": 0.7}},
        initial_digest="x",
        final_digest="y",
        model_dir=tmp_path,
    )
    # Flower's run ids are unsigned 64-bit numbers: wider than any column of ours.
    outcome = HostOutcome(
        run_id=2**64 - 1, params={"learning_rate": 1e-3, "batch_size": 16.0}, task=TASK, result=result,
        rounds=[], start={"parameters": 1234},
    )  # fmt: skip
    # Execute
    summary = publish_federation(home, opts, outcome)
    # Assert
    store = open_store(db_url)
    try:
        [stored] = store.query(None, limit=10)
        [private] = store.list_private_runs(f"{CANARY}-fed", kind="federated")
        trials = store.list_private_runs(f"{CANARY}-fed")
    finally:
        store.close()
    record = stored.record
    assert stored.id == summary.record_id == private.record_id and trials == []
    assert record.kind == "federated" and record.members == (member,)
    assert record.study == pseudonym(home.secret, "federation", f"{CANARY}-fed")
    assert record.hyperparameters == {"learning_rate": 1e-3, "batch_size": 16}
    assert record.metrics == {"accuracy": 0.7} and record.model.num_parameters == 1234
    assert [(p.step, p.metric) for p in record.curve] == [
        (1, "accuracy"), (1, "eval_loss"), (2, "accuracy"),
    ]  # fmt: skip
    assert private.trial_number == 0 and private.detail.extra == {"run_id": str(2**64 - 1)}
    assert CANARY.encode() not in stored.envelope
    assert record.resumed_after_round == 0 and private.detail.resumed_after_round == 0


def test_a_resumed_federation_is_published_saying_after_which_round(
    home: NodeHome, db_url: str, tmp_path: Path
) -> None:
    # Prepare: a run whose host was restarted after round 1 of 2.
    from gridpoint.federation.host import FederationResult, HostOptions, HostOutcome
    from gridpoint.federation.publish import publish_federation

    opts = HostOptions(
        federation="resumed", study=ROOT / "examples" / "tiny-study.toml", rounds=2,
        min_members=1, listen="127.0.0.1:0", lora=False, strategy="fedavg", round_timeout=30,
        params={}, db=db_url,
    )  # fmt: skip
    result = FederationResult(
        members=["b" * 40],
        train_metrics={1: {"accuracy": 0.6}, 2: {"accuracy": 0.7}},
        initial_digest="x",
        final_digest="y",
        model_dir=tmp_path,
        resumed_after=1,
    )
    outcome = HostOutcome(
        run_id=7, params={"learning_rate": 1e-3}, task=TASK, result=result, rounds=[],
        start={"parameters": 10},
    )  # fmt: skip
    # Execute
    summary = publish_federation(home, opts, outcome)
    # Assert: the public record (read back from its signed envelope) and the private run say it.
    store = open_store(db_url)
    try:
        [stored] = store.query(None, limit=10)
        [private] = store.list_private_runs("resumed", kind="federated")
    finally:
        store.close()
    assert stored.id == summary.record_id and summary.resumed_after == 1
    assert stored.record.resumed_after_round == 1
    assert (
        private.detail.resumed_after_round == 1
        and "resumed_after_round" not in private.detail.extra
    )


def test_an_imported_run_goes_through_the_service_once(home: NodeHome, db_url: str) -> None:
    # Prepare: a run in a source's own names, with a percentage that is no accuracy.
    run = ForeignRun(
        source_key=f"mlflow:{CANARY}",
        study=f"{CANARY}-experiment",
        state="complete",
        params={"lr": "0.001", "per_device_train_batch_size": 8, f"{CANARY}_knob": "x"},
        curve=(CurvePoint(1, "val_acc", 55.0), CurvePoint(1, "eval_loss", 0.8)),
        metrics={"val_acc": 61.0, "eval_loss": 0.7, "f1": 0.6},
        objective_metric="f1",
        objective_direction="maximize",
        finished_at=datetime(2026, 3, 2, tzinfo=UTC),
    )
    # Execute
    with HomeSink(home, db=db_url) as sink:
        first = sink.add(run, TASK, ModelRef(family="bert"))
        again = sink.add(run, TASK, ModelRef(family="bert"))
    # Assert
    store = open_store(db_url)
    try:
        [stored] = store.query(None, limit=10)
        [private] = store.list_private_runs(f"{CANARY}-experiment")
    finally:
        store.close()
    assert first.status == IMPORTED and again.status == PRESENT
    assert stored.id == first.record_id == private.record_id
    record = stored.record
    assert record.metrics == {"eval_loss": 0.7, "f1": 0.6} and record.period == "2026-03"
    assert record.hyperparameters == {"learning_rate": 0.001, "batch_size": 8}
    assert {(p.metric, p.value) for p in record.curve} == {("eval_loss", 0.8)}
    assert NotPublished("metric", "val_acc", "a value outside the range of accuracy (0 to 1)") in (
        first.left_out
    )
    assert (
        private.detail.source == f"mlflow:{CANARY}"
        and CANARY in private.detail.extra["source_params"]
    )
    assert CANARY.encode() not in stored.envelope


def test_a_written_record_names_become_pseudonyms(home: NodeHome, node_store: SqlStore) -> None:
    # Prepare: a record written by hand, its study and trial in plain words.
    service = PublishingService(home, node_store)
    written = record_to_json(make_record()) | {"study": "acmesecretproject", "trial": "7"}
    already = pseudonym(home.secret, "study", "other")
    # Execute
    first = service.publish_written(written)
    kept = service.publish_written(written | {"study": already, "trial": ""})
    # Assert: the pseudonyms tune would give; the owner finds the record by its name.
    assert first.record is not None and kept.record is not None
    assert first.record.study == pseudonym(home.secret, "study", "acmesecretproject")
    assert first.record.trial == pseudonym(home.secret, "trial", "acmesecretproject", "7")
    assert kept.record.study == already and kept.record.trial == ""
    where = own_study_names(parse_filter("study = 'acmesecretproject'"), home.secret)
    assert [s.id for s in node_store.query(where, limit=5)] == [first.record_id]
    envelope = node_store.get_record(str(first.record_id))
    assert envelope is not None and b"acmesecretproject" not in envelope.envelope


@pytest.mark.parametrize(
    ("metrics", "curve_value"),
    [({"accuracy": 1e300}, 0.5), ({"f1": 1.5}, 0.5), ({"accuracy": 0.5}, -0.1)],
)
def test_a_written_record_out_of_range_is_refused(
    home: NodeHome, node_store: SqlStore, metrics: dict[str, float], curve_value: float
) -> None:
    written = record_to_json(make_record()) | {
        "metrics": metrics,
        "curve": [{"step": 1, "metric": "accuracy", "value": curve_value}],
    }
    with pytest.raises(RecordError, match="outside the range of (accuracy|f1)"):
        PublishingService(home, node_store).publish_written(written)
    assert node_store.count_records() == 0


def test_anonymize_sign_and_keep_are_written_once() -> None:
    # Every source reaches the anonymizer and the store's one-transaction write only
    # through the publishing service.
    graph = grimp.build_graph("gridpoint", exclude_type_checking_imports=True)
    anonymizer = graph.find_modules_that_directly_import("gridpoint.node.publishing.anonymize")
    assert anonymizer == {
        "gridpoint.node.publishing.service",
        "gridpoint.integrations.names",  # PUBLIC_METRICS: which names it may rename onto
        "gridpoint.integrations.foreign_run",  # METRIC_RANGES: what it leaves out, and why
    }
    service = graph.find_modules_that_directly_import("gridpoint.node.publishing.service")
    assert {
        "gridpoint.node.tuning.study_run",  # tune
        "gridpoint.integrations.sink",  # Trainer callback, Optuna publisher, importers
        "gridpoint.federation.publish",  # fed host
        "gridpoint.node.cli.local",  # publish
    } <= service
    writers = {
        path.resolve().relative_to(ROOT).as_posix()
        for top in ("node", "gridpoint", "federation", "trainers")
        for path in (ROOT / top).rglob("*.py")
        if ".add_run(" in path.read_text()
    }
    assert writers == {"node/publishing/service.py"}
