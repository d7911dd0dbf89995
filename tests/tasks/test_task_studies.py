"""Each task type, a 2-trial study through `gridpoint tune` (in this process), then resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpoint.node.store.sql_store import open_store
from tests.cli_main import run_main
from tests.tasks.studies import TASKS, write_study

pytestmark = pytest.mark.slow

METRICS = {
    "causal-lm": {"eval_loss", "perplexity", "train_loss"},
    "token-classification": {"f1", "accuracy", "eval_loss", "train_loss"},
    "image-classification": {"accuracy", "f1", "eval_loss", "train_loss"},
}


@pytest.mark.parametrize("task", TASKS)
def test_a_study_of_each_task_publishes_curves_and_resumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, task: str
) -> None:
    # Prepare
    home = tmp_path / "node"
    run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    study = write_study(tmp_path / "study", task)
    # Execute: 2 trials, then one more in a resumed run.
    first = run_main(
        capsys, "tune", str(study), "--trials", "2", "--devices", "cpu", "--json", home=home
    ).json()
    again = run_main(capsys, "tune", str(study), "--trials", "1", "--json", home=home).json()
    rows = run_main(capsys, "catalog", "query", "kind = 'trial'", "--json", home=home).json()
    # Assert
    trials = [*first["trials"], *again["trials"]]
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert all(t["state"] == "complete" and t["device"] == "cpu" for t in trials)
    assert len(rows) == 3 and len({r["trial"] for r in rows}) == 3
    for row in rows:
        assert row["task"]["type"] == task
        assert {p["metric"] for p in row["curve"]} == METRICS[task]
        assert set(row["metrics"]) == METRICS[task]
        assert row["study"] != f"tiny-{task}"
    descriptor = rows[0]["task"]
    if task == "causal-lm":
        assert descriptor["num_labels"] == 0 and descriptor["text_length_bucket"] == "<32"
        assert all(r["model"]["method"] == "lora" for r in rows)
    if task == "token-classification":
        assert descriptor["num_labels"] == 3 and descriptor["language"] == "en"
    if task == "image-classification":
        assert descriptor["image_size_bucket"] == "<64" and descriptor["num_labels"] == 2
    store = open_store(f"sqlite:///{home / 'catalog.db'}")
    private = store.list_private_runs(f"tiny-{task}")
    store.close()
    assert [p.trial_number for p in private] == [0, 1, 2]
    assert private[0].detail.task.type == task
