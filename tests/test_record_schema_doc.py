"""docs/run-record.schema.json documents exactly the JSON that `gridpoint publish` reads."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from gridpoint.schema import PrivacyGuarantee, record_from_json, record_to_json
from tests.helpers import make_record

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "run-record.schema.json"


def test_the_committed_schema_is_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_record_schema.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == DOC.read_text(), "run `python tools/gen_record_schema.py`"


def test_every_key_of_a_record_is_documented_and_nothing_else() -> None:
    schema = json.loads(DOC.read_text())
    # A private, resumed federation: the one kind that has every key (an exact record has
    # no `privacy`, one that was never resumed no `resumed_after_round`).
    record = dataclasses.replace(
        make_record(),
        kind="federated",
        trial="",
        privacy=PrivacyGuarantee(4.0, 1e-5, "training", "rdp"),
        resumed_after_round=1,
    )
    data = record_to_json(record)
    assert set(data) == set(schema["properties"])
    assert set(data["task"]) == set(schema["properties"]["task"]["properties"])
    assert set(data["model"]) == set(schema["properties"]["model"]["properties"])
    assert set(data["privacy"]) == set(schema["properties"]["privacy"]["properties"])
    assert record_from_json(data) == record
