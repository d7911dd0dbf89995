"""The terminal output a person reads: `catalog query --columns/--format`, `catalog show`."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.cli_main import run_main
from tests.helpers import cli
from tests.ui.conftest import PRIVATE_CANARY, World


@pytest.mark.slow
def test_catalog_query_prints_chosen_columns_as_csv_tsv_and_a_rounded_table(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    args = ("catalog", "query", "metrics.accuracy > 0.7", "--order-by", "metrics.accuracy desc")
    columns = "task.type,params.learning_rate,metrics.accuracy"
    as_csv = run_main(capsys, *args, "--columns", columns, "--format", "csv", home=world.beta.path)
    as_tsv = run_main(capsys, *args, "--columns", columns, "--format", "tsv", home=world.beta.path)
    table = cli(
        *args, "--columns", "metrics.accuracy", home=world.beta.path, env={"COLUMNS": "200"}
    )
    assert as_csv.returncode == as_tsv.returncode == table.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == ["id", "signed by", *columns.split(",")]
    expected = sorted(
        (rid for rid, r in world.records.items() if r.metrics["accuracy"] > 0.7),
        key=lambda rid: -world.records[rid].metrics["accuracy"],
    )
    assert [r["id"] for r in rows] == expected
    assert {r["signed by"] for r in rows} == {"Alpha Labs", "Beta Research"}
    assert (
        float(rows[0]["params.learning_rate"])
        == world.records[expected[0]].hyperparameters["learning_rate"]
    )
    assert list(csv.reader(io.StringIO(as_tsv.stdout), delimiter="\t")) == list(
        csv.reader(io.StringIO(as_csv.stdout))
    )
    assert "Alpha Labs" in table.stdout and expected[0][:12] in table.stdout
    # Numbers rounded for reading: 4 significant digits at most, never float noise.
    shown = [line.split("│")[-2].strip() for line in table.stdout.splitlines() if "│" in line]
    assert shown == [f"{world.records[rid].metrics['accuracy']:.4g}" for rid in expected]
    as_json = json.loads(run_main(capsys, *args, "--format", "json", home=world.beta.path).stdout)
    assert [r["id"] for r in as_json] == expected and as_json[0]["signer_name"]


def test_an_unknown_column_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    result = run_main(
        capsys, "catalog", "query", "", "--columns", "metric.acc", home=world.beta.path
    )
    assert result.returncode == 1 and result.stderr.startswith("error: unknown key 'metric.acc'")
    assert "Traceback" not in result.stderr


def test_catalog_show_takes_a_unique_prefix_and_keeps_private_details_home(
    capsys: pytest.CaptureFixture[str], world: World
) -> None:
    own = run_main(capsys, "catalog", "show", world.beta_ids[0][:9], home=world.beta.path)
    peer = run_main(
        capsys, "catalog", "show", world.alpha_ids[0][:9], "--json", home=world.beta.path
    )
    assert own.returncode == 0 and peer.returncode == 0, own.stderr + peer.stderr
    assert world.beta_ids[0] in own.stdout.replace("\n", "").replace(" ", "").replace("│", "")
    assert PRIVATE_CANARY in own.stdout and "curve accuracy (15 points)" in own.stdout
    shown = json.loads(peer.stdout)
    assert shown["id"] == world.alpha_ids[0] and shown["signer_name"] == "Alpha Labs"
    assert [f["name"] for f in shown["found_at"]] == ["Alpha Labs"]
    assert "private" not in shown and PRIVATE_CANARY not in peer.stdout
    none = run_main(capsys, "catalog", "show", "0" * 5 + "x", home=world.beta.path)
    assert none.returncode == 1 and "not a record id" in none.stderr
