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
import threading
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
    # stderr is read as it comes: the second Ctrl-C waits for tune to say it took the first
    # (two signals that reach a busy process before its handler runs are one Ctrl-C).
    said: list[str] = []
    assert tune.stderr is not None
    reader = threading.Thread(target=lambda: said.extend(tune.stderr or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while _states(home / "studies.db") != ["RUNNING"] and time.monotonic() < deadline:
            assert tune.poll() is None, "".join(said)
            time.sleep(0.2)
        time.sleep(1.0)  # into the training loop
        # Execute
        tune.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        while not any("Ctrl-C again" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.1)
        tune.send_signal(signal.SIGINT)
        tune.wait(timeout=60)
    finally:
        if tune.poll() is None:
            tune.kill()
            tune.wait()
        reader.join(timeout=10)
        if tune.stdout:
            tune.stdout.close()
    err = "".join(said)
    # Assert: aborted, and nothing left RUNNING for a rerun to wait out or replay.
    assert tune.returncode == 130, err
    assert _states(home / "studies.db") == ["FAIL"]
