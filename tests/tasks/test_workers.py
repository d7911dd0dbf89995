"""Two processes on one PostgreSQL-backed study: `tune` starts it, `tune --worker` joins it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from gridpoint.node.home import STUDIES_SCHEMA, NodeHome
from gridpoint.node.store.sql_store import normalize_db_url, open_store
from gridpoint.node.ui.studies import list_studies, optuna_url
from gridpoint.trainers.study_storage import SCHEMA, study_storage
from tests.helpers import ROOT, cli_json
from tests.tasks.studies import write_study

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


def _tune(home: Path, study: Path, db: str, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "gridpoint", "--home", str(home), "--db", db, "tune", str(study)]
    return subprocess.Popen(
        [*argv, "--trials", "2", "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )


def _wait_for_study(url: str, name: str, first: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        try:
            if name in optuna.get_all_study_names(study_storage(url)):
                return
        except Exception:  # the tables do not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError("the first run never created its study")


def test_a_worker_joins_a_study_and_every_trial_is_unique(tmp_path: Path, pg_url: str) -> None:
    # Prepare
    home = tmp_path / "node"
    cli_json("init", "--name", "A", home=home)
    study = write_study(tmp_path / "study", "token-classification", name="shared-study")
    url = normalize_db_url(pg_url)
    # Execute: the first run starts the study; the worker joins while it runs.
    first = _tune(home, study, pg_url)
    procs = [first]
    try:
        _wait_for_study(url, "shared-study", first)
        procs.append(_tune(home, study, pg_url, "--worker"))
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    # Assert
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    ran = [t["number"] for out, _ in outputs for t in json.loads(out)["trials"]]
    assert sorted(ran) == [0, 1, 2, 3]
    trials = optuna.load_study(study_name="shared-study", storage=study_storage(url)).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    # Every reader finds the studies through the node's one studies URL (the UI, plot,
    # fed host --from-best-trial, optuna-dashboard): plain Optuna, no gridpoint code.
    node = NodeHome(home)
    assert node.studies_url(pg_url).endswith(f"search_path%3D{STUDIES_SCHEMA}")
    assert SCHEMA == STUDIES_SCHEMA
    plain = optuna.load_study(
        study_name="shared-study", storage=normalize_db_url(node.studies_url(pg_url))
    )
    assert len(plain.trials) == 4
    assert list_studies(optuna_url(node.studies_url(pg_url))) == ["shared-study"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    store = open_store(pg_url)
    try:
        private = store.list_private_runs("shared-study")
        records = [r.record for r in store.query(None, limit=100)]
    finally:
        store.close()
    assert sorted(p.trial_number for p in private) == [0, 1, 2, 3]
    assert len(records) == 4 and len({r.trial for r in records}) == 4
    # Each trial's curve is its own: no point appears under two trials' steps twice.
    assert all(len({(c.step, c.metric) for c in r.curve}) == len(r.curve) for r in records)
