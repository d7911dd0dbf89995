"""Writes docs/run-record.schema.json: the JSON that `gridpoint publish` accepts, as a JSON Schema.

Generated from gridpoint.schema (the dataclasses' fields and defaults, the vocabularies), so
the document cannot drift from the code: tests/test_record_schema_doc.py regenerates it and
compares. Run `python tools/gen_record_schema.py` after changing a record type.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from gridpoint.schema import (
    SCHEMA_VERSION,
    BaseModelInfo,
    RunRecord,
    SearchDimension,
    TaskDescriptor,
)
from gridpoint.schema import vocabulary as vocab

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "run-record.schema.json"

_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
}
_PARAM = {"type": ["number", "string", "boolean"]}
_ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("RunRecord", "kind"): vocab.KINDS,
    ("RunRecord", "status"): vocab.STATUSES,
    ("RunRecord", "failure"): vocab.FAILURES,
    ("TaskDescriptor", "size_bucket"): vocab.SIZE_BUCKETS,
    ("TaskDescriptor", "balance_bucket"): vocab.BALANCE_BUCKETS,
    ("TaskDescriptor", "text_length_bucket"): vocab.TEXT_LENGTH_BUCKETS,
    ("TaskDescriptor", "image_size_bucket"): vocab.IMAGE_SIZE_BUCKETS,
    ("SearchDimension", "kind"): vocab.DIMENSION_KINDS,
    ("BaseModelInfo", "method"): vocab.METHODS,
}


def _object(cls: type, required: tuple[str, ...], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = str(f.type)
        spec: dict[str, Any]
        if (cls.__name__, f.name) in _ENUMS:
            spec = {"enum": list(_ENUMS[(cls.__name__, f.name)])}
        elif kind in _TYPES:
            spec = dict(_TYPES[kind])
        elif f.name == "choices":
            spec = {"type": "array", "items": _PARAM}
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no JSON form for {kind}")
        if f.default is not dataclasses.MISSING:
            spec["default"] = f.default
        properties[f.name] = spec
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


def schema() -> dict[str, Any]:
    """The JSON Schema of a run record, as record_from_json reads it."""
    top = _object(
        RunRecord,
        ("task", "model", "hyperparameters", "curve", "metrics"),
        skip=("task", "model", "hyperparameters", "curve", "metrics", "search_space", "members",
              "objective_metric", "objective_direction", "parents", "audience", "privacy",
              "resumed_after_round"),
    )  # fmt: skip
    top["properties"].update(
        {
            "task": _object(TaskDescriptor, ("type",)),
            "model": _object(BaseModelInfo, ()),
            "hyperparameters": {"type": "object", "additionalProperties": _PARAM},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "curve": {
                "type": "array",
                "description": "ordered by step; one value per metric and step",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["step", "metric", "value"],
                    "properties": {
                        "step": {"type": "integer", "minimum": 0},
                        "metric": {"type": "string"},
                        "value": {"type": "number"},
                    },
                },
            },
            "search_space": {"type": "array", "items": _object(SearchDimension, ("name", "kind"))},
            "objective": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "metric": {"type": "string"},
                    "direction": {"enum": list(vocab.DIRECTIONS)},
                },
            },
            "members": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{40}$"}},
            "parents": {
                "type": "array",
                "description": "lineage: ids of the records this run derives from",
                "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            },
            "privacy": {
                "type": "object",
                "description": "a private study's differential-privacy guarantee, stated by its "
                "own accounting: `gridpoint publish` refuses a written one",
                "additionalProperties": False,
                "required": ["epsilon", "delta", "protected", "accountant"],
                "properties": {
                    "epsilon": {"type": "number", "exclusiveMinimum": 0},
                    "delta": {"type": "number", "minimum": 0, "exclusiveMaximum": 0.01},
                    "protected": {"enum": ["training", "evaluation", "both"]},
                    "accountant": {"enum": ["rdp", "pld"]},
                },
            },
            "resumed_after_round": {
                "type": "integer",
                "minimum": 0,
                "maximum": 2**32 - 1,
                "description": "a federated run: the last round completed before the host was "
                "restarted and continued from its checkpoint (0: no restart)",
            },
            "audience": {
                "type": "array",
                "description": "node ids allowed to hold a copy (sorted); empty for every node "
                "that trusts the author",
                "items": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
            },
        }
    )
    top["properties"]["schema_version"]["enum"] = [SCHEMA_VERSION]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gridpoint run record (the JSON `gridpoint publish` accepts)",
        "description": (
            "Generated by tools/gen_record_schema.py from gridpoint.schema. Further rules "
            "(name patterns, finite numbers, pseudonyms, public hub ids) are checked by "
            "gridpoint.schema.validate_record, whose errors name the field."
        ),
        **top,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    out: Path = parser.parse_args().out
    out.write_text(json.dumps(schema(), indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
