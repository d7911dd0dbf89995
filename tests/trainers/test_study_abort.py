"""A second Ctrl-C aborts `tune` at once, and the trial it cut short is recorded as failed.

A real `gridpoint tune` process (signals are what is tested), on a study whose trial is long
enough to be interrupted.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_json

pytestmark = pytest.mark.slow


def _states(db: Path) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return [row[0] for row in conn.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # the tables do not exist yet
        return []


def test_a_double_ctrl_c_records_the_cut_trial_as_failed_at_once(tmp_path: Path) -> None:
    # Prepare: a trial of 400 epochs (minutes), so the second Ctrl-C lands in its training.
    home = tmp_path / "node"
    cli_json("init", "--name", "A", home=home)
    (tmp_path / "tiny_pipeline.py").write_text((ROOT / "examples" / "tiny_pipeline.py").read_text())
    study = tmp_path / "study.toml"
    text = (ROOT / "examples" / "tiny-study.toml").read_text()
    study.write_text(text.replace("low = 4, high = 8", "low = 400, high = 400"))
    tune = subprocess.Popen(
        [sys.executable, "-m", "gridpoint", "--home", str(home), "tune", str(study),
         "--trials", "1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _states(home / "studies.db") != ["RUNNING"] and time.monotonic() < deadline:
            assert tune.poll() is None, tune.communicate()
            time.sleep(0.2)
        time.sleep(1.0)  # into the training loop
        # Execute
        tune.send_signal(signal.SIGINT)
        time.sleep(0.5)
        tune.send_signal(signal.SIGINT)
        _out, err = tune.communicate(timeout=60)
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
    # Assert: aborted, and nothing left RUNNING for a rerun to wait out or replay.
    assert tune.returncode == 130, err
    assert _states(home / "studies.db") == ["FAIL"]
