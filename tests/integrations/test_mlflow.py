"""MLflow: runs of a real tracking store (SQLite) imported as records, each exactly once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import open_store
from gridpoint.schema import RunRecord
from tests.cli_main import run_main
from tests.helpers import MakeHome, cli
from tests.integrations.sources import PRIVATE_METRIC, PRIVATE_PARAM, mlflow_store

# Each CLI run loads MLflow (seconds); MLflow's own queries use a loader strategy SQLAlchemy 2.1
# deprecates.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]

TASK = ("--task", "text-classification", "--train-size", "20000", "--language", "en")


def _catalog(home: NodeHome) -> tuple[list[RunRecord], list[bytes]]:
    store = open_store(home.db_url())
    try:
        stored = store.query(None, limit=10_000)
        return [r.record for r in stored], [r.envelope for r in stored]
    finally:
        store.close()


def test_import_mlflow_matches_the_runs_and_reimport_adds_only_new_runs(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, mlflow_template: Path
) -> None:
    # Prepare: ten runs, the last one failed.
    home = make_home("A")
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    uri = f"sqlite:///{db}"
    args = ("import", "mlflow", "--tracking-uri", uri, "--experiment", "ZQEXPERIMENT",
            "--metric", "val_acc", *TASK)  # fmt: skip
    # Execute
    first = run_main(capsys, *args, "--json", home=home.path).json()
    again = run_main(capsys, *args, "--json", home=home.path).json()
    mlflow_store(db, "ZQEXPERIMENT", 2)
    later = run_main(capsys, *args, "--json", home=home.path).json()
    # Assert: the nine finished runs, each matching its MLflow run.
    assert (first["imported"], first["already_present"], len(first["skipped"])) == (9, 0, 1)
    assert (again["imported"], again["already_present"]) == (0, 9)
    assert (later["imported"], later["already_present"]) == (2, 9)
    assert {(n["kind"], n["name"]) for n in first["not_published"]} == {
        ("param", PRIVATE_PARAM),
        ("metric", PRIVATE_METRIC),
    }
    records, envelopes = _catalog(home)
    assert len(records) == 11
    client = MlflowClient(tracking_uri=uri)
    [experiment] = [e for e in client.search_experiments() if e.name == "ZQEXPERIMENT"]
    runs = [
        r for r in client.search_runs([experiment.experiment_id]) if r.info.status == "FINISHED"
    ]
    by_lr: dict[object, list[RunRecord]] = {}
    for record in records:
        assert record.objective_metric == "accuracy" and record.objective_direction == "maximize"
        by_lr.setdefault(record.hyperparameters["learning_rate"], []).append(record)
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_acc")
        matching = [
            r
            for r in by_lr[float(run.data.params["lr"])]
            if [p.value for p in r.curve if p.metric == "accuracy"] == [m.value for m in history]
            and r.metrics["accuracy"] == run.data.metrics["val_acc"]
            and r.metrics["train_loss"] == run.data.metrics["loss"]
        ]
        assert matching, run.info.run_id
        assert matching[0].hyperparameters["batch_size"] == 16
    for blob in envelopes:
        for canary in (b"zqcanarymlflow", b"zqexperiment", b"data_path", b"gpu_mem"):
            assert canary not in blob.lower()


def test_import_mlflow_refuses_an_unknown_experiment_and_a_metric_outside_the_vocabulary(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, mlflow_template: Path
) -> None:
    home = make_home("A")
    base = ("import", "mlflow", "--tracking-uri", f"sqlite:///{mlflow_template}", *TASK)
    unknown = run_main(capsys, *base, "--experiment", "nope", home=home.path)
    metric = run_main(
        capsys, *base, "--experiment", "ZQEXPERIMENT", "--metric", "gpu_temp", home=home.path
    )
    assert unknown.returncode == 1 and "no MLflow experiment named 'nope'" in unknown.stderr
    assert metric.returncode == 1 and "not in the metric vocabulary" in metric.stderr


def test_importing_a_thousand_runs_shows_progress_and_reports_its_time(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    home = make_home("A")
    uri = mlflow_store(tmp_path / "mlflow.db", "big", 1000, bulk=True)
    # Execute: a terminal as far as rich can tell, so the bar is drawn.
    started = time.perf_counter()
    result = cli(
        "import", "mlflow", "--tracking-uri", uri, "--experiment", "big", "--metric", "val_acc",
        *TASK, home=home.path, env={"TTY_COMPATIBLE": "1", "COLUMNS": "120"}, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    # Assert
    assert result.returncode == 0, result.stderr
    assert "importing" in result.stderr and "1000/1000" in result.stderr
    assert "imported 900 run(s); 0 already in this home; 100 skipped" in result.stdout
    print(f"imported 1,000 MLflow runs in {seconds:.1f} s ({1000 / seconds:.0f} runs/s)")
