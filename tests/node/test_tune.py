"""`gridpoint tune` through the CLI: trials land in the catalog, curves included, a resumed run
continues the search, one Ctrl-C stops a real process after its trial.

The commands run in this process (tests/cli_main.py) but the Ctrl-C, which needs a process of
its own; tune through a child process end to end is tests/node/test_first_hour.py's story.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gridpoint.node.store.sql_store import open_store
from tests.cli_main import run_main
from tests.helpers import ROOT, cli_json
from tests.tasks.studies import write_fast_example

pytestmark = pytest.mark.slow


def test_tune_publishes_every_trial_with_its_curve_and_resumes_without_repeating(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare
    home = tmp_path / "node"
    study = str(write_fast_example(tmp_path / "study"))

    def run_json(*args: str) -> Any:
        return run_main(capsys, *args, "--json", home=home).json()

    run_json("init", "--name", "A")
    # Execute: one run of 2 trials, then two resumed runs (one printing for a person).
    first = run_json("tune", study, "--trials", "2")
    more = run_main(capsys, "tune", study, "--trials", "1", home=home)
    again = run_json("tune", study, "--trials", "1")
    rows = run_json("catalog", "query", "kind = 'trial'")
    by_name = run_json("catalog", "query", "study = 'tiny-sentiment'")
    [one] = run_json("catalog", "query", f"id = '{rows[0]['id']}'")
    # Assert: the resumed runs continue the search instead of replaying it.
    assert more.returncode == 0, more.stderr
    assert "record(s) published" in more.stdout and "best of the study so far" in more.stdout
    searched = _searched(home)
    trials = [*first["trials"], *again["trials"]]
    assert [t["number"] for t in trials] == [0, 1, 3]
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    configurations = [{k: t["params"][k] for k in searched[0]} for t in trials]
    assert len({json.dumps(c, sort_keys=True) for c in [*configurations, searched[2]]}) == 4
    complete = [t for t in first["trials"] + again["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["metrics"]["accuracy"])
    assert again["best"]["accuracy"] >= best["metrics"]["accuracy"]
    assert len(rows) == 4 and len({r["study"] for r in rows}) == 1
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
    assert [p.trial_number for p in private] == [0, 1, 2, 3]
    assert private[0].detail.pipeline == "tiny_pipeline:load"


def _searched(home: Path) -> list[dict[str, object]]:
    """Each trial's searched parameters, as the study's Optuna storage holds them."""
    import optuna

    study = optuna.load_study(
        study_name="tiny-sentiment", storage=f"sqlite:///{home / 'studies.db'}"
    )
    return [dict(trial.params) for trial in study.trials]


def test_tune_stopped_by_one_ctrl_c_keeps_its_trials_and_exits_130(tmp_path: Path) -> None:
    # Prepare
    home = tmp_path / "node"
    study = str(write_fast_example(tmp_path / "study"))
    cli_json("init", "--name", "A", home=home)
    argv = [sys.executable, "-m", "gridpoint", "--home", str(home), "tune", study]
    tune = subprocess.Popen(
        [*argv, "--trials", "3", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    # Execute: one Ctrl-C as soon as the first trial has started.
    try:
        _wait_for_a_trial(home, tune)
        tune.send_signal(signal.SIGINT)
        out, err = tune.communicate(timeout=300)
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
    # Assert: stopped after the trial that was running, everything done kept, status 130.
    assert tune.returncode == 130, err
    done = json.loads(out)
    assert done["interrupted"] is True and 1 <= len(done["trials"]) < 3
    assert all(t["record_id"] for t in done["trials"] if t["state"] != "failed")


def _wait_for_a_trial(home: Path, tune: subprocess.Popen[str]) -> None:
    """Until the study's storage holds a trial (read-only, as plain SQLite)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and tune.poll() is None:
        try:
            db = sqlite3.connect(f"file:{home / 'studies.db'}?mode=ro", uri=True)
            try:
                if db.execute("SELECT count(*) FROM trials").fetchone()[0]:
                    return
            finally:
                db.close()
        except sqlite3.OperationalError:  # no file, or no tables yet
            pass
        time.sleep(0.1)
    raise AssertionError("no trial started in time")
