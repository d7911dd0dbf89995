"""`gridpoint tune` end to end through the CLI: trials land in the catalog, curves included."""

from __future__ import annotations

import json
from pathlib import Path

from gridpoint.node.store.sql_store import open_store
from tests.helpers import ROOT, cli, cli_json

STUDY = str(ROOT / "examples" / "tiny-study.toml")


def test_tune_publishes_every_trial_with_its_curve_and_resumes_without_repeating(
    tmp_path: Path,
) -> None:
    # Prepare
    home = tmp_path / "node"
    cli_json("init", "--name", "A", home=home)
    # Execute: one run of 3 trials, then two resumed runs.
    first = cli_json("tune", STUDY, "--trials", "3", home=home, timeout=300)
    more = cli_json("tune", STUDY, "--trials", "1", home=home, timeout=300)
    again = cli_json("tune", STUDY, "--trials", "1", home=home, timeout=300)
    rows = cli_json("catalog", "query", "kind = 'trial'", home=home)
    by_name = cli_json("catalog", "query", "study = 'tiny-sentiment'", home=home)
    [one] = cli_json("catalog", "query", f"id = '{rows[0]['id']}'", home=home)
    # Assert: the resumed runs continue the search instead of replaying it.
    trials = first["trials"] + more["trials"] + again["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3, 4]
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 5
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    complete = [t for t in trials if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["metrics"]["accuracy"])
    assert again["best"] == {"trial": best["number"], "accuracy": best["metrics"]["accuracy"]}
    assert len(rows) == 5 and len({r["study"] for r in rows}) == 1
    # The owner finds its study by name; only the pseudonym is in the records.
    assert {r["id"] for r in by_name} == {r["id"] for r in rows}
    assert rows[0]["study"] != "tiny-sentiment" and one["id"] == rows[0]["id"]
    for row in rows:
        assert {p["metric"] for p in row["curve"]} >= {"accuracy", "eval_loss"}
        assert row["task"]["num_labels"] == 2 and row["task"]["size_bucket"] == "<1k"
        assert set(row["hyperparameters"]) >= {"learning_rate", "batch_size"}
    store = open_store(f"sqlite:///{home / 'catalog.db'}")
    private = store.list_private_runs("tiny-sentiment")
    store.close()
    assert [p.trial_number for p in private] == [0, 1, 2, 3, 4]
    assert json.loads(private[0].detail)["pipeline"] == "tiny_pipeline:load"


def test_tune_json_output_is_clean_json_with_progress_on_stderr(tmp_path: Path) -> None:
    home = tmp_path / "node"
    cli_json("init", "--name", "A", home=home)
    result = cli("tune", STUDY, "--trials", "1", home=home, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "trial" in result.stdout and "record(s) published" in result.stdout
