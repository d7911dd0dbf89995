"""Importers against sources that are not what they claim, damaged, or misbehaving.

Every case: one line or a skipped run with its reason, never a traceback, and the source's
bytes exactly as they were (the importers open it read-only). Run in this process through
`main(argv)`; the stores are real ones written by Optuna and MLflow, then damaged by hand.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gridpoint.node.home import NodeHome
from tests.cli_main import Ran, run_main
from tests.helpers import MakeHome
from tests.integrations.sources import (
    damaged_copy,
    tree_digest,
)

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

TASK = ("--task", "text-classification", "--train-size", "5000", "--language", "en")


def _one_line_or_skips(ran: Ran) -> None:
    assert "Traceback" not in ran.stderr + ran.stdout
    if ran.returncode != 0:
        assert ran.returncode == 1
        lines = [line for line in ran.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr


# --- never writes into a source ---------------------------------------------------------


@pytest.mark.parametrize("source", ["optuna", "mlflow"])
@pytest.mark.parametrize("content", ["empty", "another application"])
def test_a_file_that_is_not_the_source_is_refused_and_left_as_it_was(
    capsys: pytest.CaptureFixture[str],
    make_home: MakeHome,
    tmp_path: Path,
    source: str,
    content: str,
) -> None:
    # Prepare
    home: NodeHome = make_home("A")
    path = tmp_path / "data.db"
    if content == "empty":
        path.touch()
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            db.execute("INSERT INTO invoices (total) VALUES (12.5)")
        db.close()
    before = tree_digest(path)
    args = (
        ("import", "optuna", "--storage", f"sqlite:///{path}", "--study", "s")
        if source == "optuna"
        else ("import", "mlflow", "--tracking-uri", f"sqlite:///{path}", "--experiment", "e")
    )
    # Execute
    ran = run_main(capsys, *args, *TASK, home=home.path)
    # Assert
    _one_line_or_skips(ran)
    assert ran.returncode == 1
    assert ("empty file" if content == "empty" else "another application's database") in ran.stderr
    assert tree_digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "data.db"]


# --- damaged stores: one line, or the damaged run skipped with its reason ----------------

#: (name, SQL that damages a copy of the Optuna template, what the import says)
OPTUNA_DAMAGE = [
    ("unknown state", "UPDATE trials SET state = 'EXPLODED' WHERE number = 1", "unreadable"),
    ("categorical index not a number",
     "UPDATE trial_params SET param_value = NULL WHERE trial_id = 3 AND param_name = 'batch_size'",
     "unreadable"),
    ("distribution not JSON",
     "UPDATE trial_params SET distribution_json = '{nope' WHERE trial_id = 4", "unreadable"),
    ("distribution not an object",
     "UPDATE trial_params SET distribution_json = '[1, 2]' WHERE trial_id = 5", "unreadable"),
    ("5,000-deep attribute",
     "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (6, 'deep', '"
     + "[" * 5000 + "]" * 5000 + "')", "nested too deeply"),
    ("out-of-range timestamp",
     "UPDATE trials SET datetime_start = '99999-12-31 00:00:00' WHERE number = 2", "unreadable"),
    ("infinite objective value",
     "UPDATE trial_values SET value = 9e999 WHERE trial_id = 1", "imported 8"),
    ("old schema", "UPDATE alembic_version SET version_num = 'v1.2.0.a'", "error: this Optuna"),
    ("unknown direction", "UPDATE study_directions SET direction = 'SIDEWAYS'", "error: cannot read"),
]  # fmt: skip

#: (name, SQL that damages a copy of the MLflow template, what the import says)
MLFLOW_DAMAGE = [
    ("metric value not a number",
     "UPDATE metrics SET value = 'abc' WHERE rowid = (SELECT min(rowid) FROM metrics)",
     "unreadable: ValueError"),
    ("unknown status",
     "PRAGMA ignore_check_constraints = ON; UPDATE runs SET status = 'EXPLODED' WHERE rowid = 1",
     "exploded: only finished runs"),
    ("out-of-range time", "UPDATE runs SET end_time = 99999999999999999 WHERE rowid = 2",
     "out of range"),
    ("an MLflow 1.x database without latest_metrics", "DROP TABLE latest_metrics",
     "imported 9"),
]  # fmt: skip


def _damage_files(root: Path, kind: str) -> str:
    """Damages one run of a copy of the file store template; what the import says."""
    [experiment] = [p for p in root.iterdir() if p.name not in ("0", ".trash")]
    run = sorted(p for p in experiment.iterdir() if p.is_dir())[0]
    meta = run / "meta.yaml"
    if kind == "meta.yaml not YAML":
        meta.write_text("status: [3\n  : :")
        return "unreadable"
    if kind == "5,000-deep meta.yaml":
        meta.write_text("[" * 5000 + "]" * 5000)
        return "unreadable"
    if kind == "metric line not numbers":
        (run / "metrics" / "val_acc").write_text("abc def ghi\n")
        return "unreadable: ValueError"
    if kind == "out-of-range end time":
        text = meta.read_text()
        meta.write_text(
            "\n".join(
                "end_time: 99999999999999999999" if line.startswith("end_time:") else line
                for line in text.splitlines()
            )
        )
        return "out of range"
    assert kind == "unknown status number"
    meta.write_text(meta.read_text().replace("status: 3", "status: 42"))
    return "42: only finished runs"


FILE_DAMAGE = [
    "meta.yaml not YAML",
    "5,000-deep meta.yaml",
    "metric line not numbers",
    "out-of-range end time",
    "unknown status number",
]


def _check_import(
    capsys: pytest.CaptureFixture[str],
    home: Path,
    source: Path,
    args: tuple[str, ...],
    expected: str,
) -> None:
    before = tree_digest(source)
    ran = run_main(capsys, *args, *TASK, home=home)
    _one_line_or_skips(ran)
    assert expected in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    assert tree_digest(source) == before


DAMAGE = [("optuna", *d) for d in OPTUNA_DAMAGE] + [("mlflow", *d) for d in MLFLOW_DAMAGE]


@pytest.mark.parametrize(("source", "name", "sql", "expected"), DAMAGE, ids=[d[1] for d in DAMAGE])
def test_a_damaged_store_gives_one_line_or_skips_the_damaged_run(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, optuna_template: Path,
    mlflow_template: Path, source: str, name: str, sql: str, expected: str,
) -> None:  # fmt: skip
    home: NodeHome = make_home("A")
    if source == "optuna":
        path = damaged_copy(optuna_template, tmp_path / "study.db", sql)
        args: tuple[str, ...] = (
            "import",
            "optuna",
            "--storage",
            f"sqlite:///{path}",
            "--study",
            "sweep",
        )
    else:
        path = damaged_copy(mlflow_template, tmp_path / "mlflow.db", sql)
        args = ("import", "mlflow", "--tracking-uri", f"sqlite:///{path}", "--experiment",
                "ZQEXPERIMENT", "--metric", "val_acc")  # fmt: skip
    _check_import(capsys, home.path, path, args, expected)


@pytest.mark.parametrize("kind", FILE_DAMAGE)
def test_a_damaged_mlflow_file_store_skips_the_damaged_run(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, files_template: Path,
    kind: str,
) -> None:  # fmt: skip
    home: NodeHome = make_home("A")
    root = tmp_path / "mlruns"
    shutil.copytree(files_template, root)
    expected = _damage_files(root, kind)
    args = ("import", "mlflow", "--tracking-uri", root.as_uri(), "--experiment", "exp",
            "--metric", "val_acc")  # fmt: skip
    _check_import(capsys, home.path, root, args, expected)


# --- file stores ------------------------------------------------------------------------


def test_a_file_store_imports_like_mlflow_reads_it_and_is_left_untouched(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, files_template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Prepare: MLflow 3 refuses file stores unless told; our reader needs no such opt-in.
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    home: NodeHome = make_home("A")
    root = tmp_path / "mlruns"
    shutil.copytree(files_template, root)
    shutil.rmtree(root / ".trash")  # MLflow's FileStore adds it on open; we must not
    before = tree_digest(root)
    args = ("import", "mlflow", "--experiment", "exp", "--metric", "val_acc", *TASK, "--json")
    # Execute: the URI form and the plain folder are the same store.
    first = run_main(capsys, *args, "--tracking-uri", root.as_uri(), home=home.path).json()
    again = run_main(capsys, *args, "--tracking-uri", str(root), home=home.path).json()
    # Assert: three finished runs (the fourth is FAILED: i % 10 == 9 only from ten runs up).
    assert (first["imported"], len(first["skipped"])) == (4, 0)
    assert (again["imported"], again["already_present"]) == (0, 4)
    assert {(n["kind"], n["name"]) for n in first["not_published"]} == {
        ("param", "data_path"),
        ("metric", "gpu_mem_gb"),
    }
    from gridpoint.node.store.sql_store import open_store

    store = open_store(home.db_url())
    try:
        records = [r.record for r in store.query(None, limit=100)]
    finally:
        store.close()
    by_lr = {r.hyperparameters["learning_rate"]: r for r in records}
    for i in range(4):
        record = by_lr[1e-4 * (1 + i)]
        assert [p.value for p in record.curve] == [0.5 + 0.05 * s + 0.001 * i for s in range(3)]
        assert record.metrics["accuracy"] == 0.5 + 0.05 * 2 + 0.001 * i
    assert tree_digest(root) == before and not (root / ".trash").exists()


def test_a_missing_file_store_folder_is_one_line_and_not_created(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    home: NodeHome = make_home("A")
    missing = tmp_path / "nope" / "mlruns"
    ran = run_main(
        capsys, "import", "mlflow", "--tracking-uri", missing.as_uri(), "--experiment", "e",
        *TASK, home=home.path,
    )  # fmt: skip
    _one_line_or_skips(ran)
    assert ran.returncode == 1 and "no MLflow file store at" in ran.stderr
    assert not (tmp_path / "nope").exists()


def test_either_database_is_read_through_a_connection_that_refuses_writes(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, db_url: str
) -> None:
    # Prepare: an Optuna study in SQLite or PostgreSQL.
    import optuna
    from sqlalchemy import text

    from gridpoint.integrations.readonly import read_only

    home: NodeHome = make_home("A")
    study = optuna.create_study(storage=db_url, study_name="s", direction="maximize")
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-3), n_trials=3)
    engine = read_only(db_url, "an Optuna storage").engine()
    # Execute
    ran = run_main(
        capsys, "import", "optuna", "--storage", db_url, "--study", "s", "--metric", "accuracy",
        *TASK, "--json", home=home.path,
    )  # fmt: skip
    try:
        with engine.begin() as db:
            db.execute(text("DELETE FROM trials"))
        wrote = True
    except Exception:
        wrote = False
    finally:
        engine.dispose()
    # Assert
    assert ran.json()["imported"] == 3
    assert not wrote and len(optuna.load_study(study_name="s", storage=db_url).trials) == 3
