"""Validation of records given as JSON: what is accepted, and refusals that name the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gridpoint.errors import RecordError
from gridpoint.node.protocol.serde import decode_record, encode_record
from gridpoint.schema import record_from_json, record_to_json

MINIMAL: dict[str, Any] = {
    "task": {
        "type": "text-classification",
        "num_labels": 2,
        "size_bucket": "1k-10k",
        "language": "en",
    },
    "model": {"base": "bert-base-uncased"},
    "hyperparameters": {"learning_rate": 3e-5, "batch_size": 32},
    "curve": [{"step": 100, "metric": "accuracy", "value": 0.71}],
    "metrics": {"accuracy": 0.85},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    *parents, last = path.split("/")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return data


def test_minimal_record_is_accepted_and_round_trips() -> None:
    record = record_from_json(MINIMAL)
    assert record.hyperparameters == {"learning_rate": 3e-5, "batch_size": 32}
    assert isinstance(record.hyperparameters["batch_size"], int)
    assert decode_record(encode_record(record)) == record
    assert record_from_json(record_to_json(record)) == record


def test_a_choice_that_reads_as_a_number_no_record_may_hold_stays_text_across_the_wire() -> None:
    # Prepare: categorical choices that read as infinity and as an integer past 64 bits.
    data = with_change(
        "search_space",
        [
            {
                "name": "optimizer",
                "kind": "categorical",
                "choices": ["1e999", "9999999999999999999", "adamw"],
            }
        ],
    )
    record = record_from_json(data)
    # Execute
    back = decode_record(encode_record(record))
    # Assert: valid on both sides (decode validates): the same record.
    assert back == record


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("colour", "red", "colour"),
        ("task/colour", "red", "task.colour"),
        ("task/num_labels", "2", "task.num_labels"),
        ("task/num_labels", True, "task.num_labels"),
        ("task/size_bucket", "about 5000", "task.size_bucket"),
        ("task/language", "English", "task.language"),
        ("metrics/accuracy", float("nan"), "metrics.accuracy"),
        ("metrics/accuracy", float("inf"), "metrics.accuracy"),
        ("hyperparameters/learning_rate", float("nan"), "hyperparameters.learning_rate"),
        ("hyperparameters/layers", [1, 2], "hyperparameters.layers"),
        ("curve/0/step", 1.5, "curve[0].step"),
        ("curve/0/value", "high", "curve[0].value"),
        ("model/base", "/home/alice/checkpoints/model", "model.base"),
        ("model/base", "../secret", "model.base"),
        ("model/method", "adapters", "model.method"),
        ("kind", "experiment", "kind"),
        ("resumed_after_round", 2, "resumed_after_round"),  # a trial never resumes
        ("resumed_after_round", -1, "resumed_after_round"),
    ],
)
def test_invalid_field_is_refused_with_its_name(path: str, value: Any, field: str) -> None:
    with pytest.raises(RecordError, match=rf"record field {__import__('re').escape(field)}\b"):
        record_from_json(with_change(path, value))


def test_a_resumed_federation_says_so_on_the_wire_and_in_json_and_a_plain_run_adds_nothing() -> (
    None
):
    federated = {**MINIMAL, "kind": "federated", "members": ["a" * 40]}
    plain = record_from_json(federated)
    resumed = record_from_json({**federated, "resumed_after_round": 2})
    assert resumed.resumed_after_round == 2 and plain.resumed_after_round == 0
    assert decode_record(encode_record(resumed)) == resumed
    assert record_from_json(record_to_json(resumed)) == resumed
    # Records written before the field keep their bytes, hence their ids.
    assert "resumed_after_round" not in record_to_json(plain)
    assert encode_record(plain) != encode_record(resumed)
    assert decode_record(encode_record(plain)).resumed_after_round == 0


@pytest.mark.parametrize("method", ["full", "lora", "head"])
def test_every_fine_tuning_method_is_accepted_on_the_wire_and_in_json(method: str) -> None:
    # "head": the task's head alone trained on the frozen base ([training] trainable = "head").
    record = record_from_json(with_change("model/method", method))
    assert record.model.method == method
    assert decode_record(encode_record(record)) == record
    assert record_from_json(record_to_json(record)) == record


def test_curve_not_ordered_by_step_is_refused() -> None:
    data = with_change(
        "curve",
        [
            {"step": 200, "metric": "accuracy", "value": 0.8},
            {"step": 100, "metric": "accuracy", "value": 0.7},
        ],
    )
    with pytest.raises(RecordError, match=r"curve\[1\]\.step.*not ordered"):
        record_from_json(data)


def test_missing_required_section_is_named() -> None:
    data = copy.deepcopy(MINIMAL)
    del data["metrics"]
    with pytest.raises(RecordError, match="record field metrics: is required"):
        record_from_json(data)
