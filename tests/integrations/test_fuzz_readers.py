"""Property-based fuzzing (Hypothesis, fixed budget) of the importers' readers.

Beside the envelope and filter fuzzing of tests/node/test_fuzz.py: a real Optuna storage, a
real MLflow tracking database and a real MLflow file store, each damaged at random (any value
in any column of any row; any bytes in any file). The property: reading the source gives a
run or a reason for each run, or one ConfigError for the whole source; nothing else is
raised, and the source's bytes are exactly as they were.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridpoint.errors import ConfigError
from gridpoint.integrations.foreign_run import ForeignRun, screen
from gridpoint.integrations.import_cli import _read
from gridpoint.integrations.mlflow_runs import read_experiment
from gridpoint.integrations.optuna_trials import read_study
from tests.integrations.sources import tree_digest

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

BUDGET = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Any value a damaged or hostile database may hold in a cell.
VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["{", "[]", '{"name": 1}', "[" * 3000 + "]" * 3000, "99999-01-01", "NaN"]),
    st.binary(max_size=20),
)

OPTUNA_CELLS = [
    ("trials", c) for c in ("number", "state", "datetime_start", "datetime_complete")
] + [
    ("trial_params", c) for c in ("param_name", "param_value", "distribution_json")
] + [
    ("trial_values", c) for c in ("value", "value_type", "objective")
] + [
    ("trial_intermediate_values", c) for c in ("step", "intermediate_value", "intermediate_value_type")
] + [
    ("study_directions", "direction"), ("studies", "study_name"),
    ("study_system_attributes", "value_json"), ("version_info", "schema_version"),
]  # fmt: skip

MLFLOW_CELLS = [
    ("runs", c) for c in ("status", "start_time", "end_time", "lifecycle_stage", "name")
] + [
    ("metrics", c) for c in ("key", "value", "step", "is_nan", "timestamp")
] + [
    ("latest_metrics", c) for c in ("key", "value", "is_nan")
] + [("params", "key"), ("params", "value"), ("experiments", "name")]  # fmt: skip


def _damage(path: Path, table: str, column: str, row: int, value: object) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA ignore_check_constraints = ON")
        rowids = [r[0] for r in db.execute(f"SELECT rowid FROM {table}")]
        if rowids:
            # A value the table's own constraints refuse cannot be in a store: left as it was.
            with contextlib.suppress(sqlite3.IntegrityError):
                db.execute(
                    f"UPDATE {table} SET {column} = ? WHERE rowid = ?",
                    (value, rowids[row % len(rowids)]),
                )
    db.close()


def _read_all(open_source: Callable[[], object]) -> None:
    """The property: a run or a reason for each run, or one ConfigError."""
    try:
        source = open_source()
    except ConfigError:
        return
    try:
        runs: Iterator[tuple[str, str, Callable[[], ForeignRun | str]]] = source.runs()  # type: ignore[attr-defined]
        for _label, _key, read in runs:
            try:
                run = _read(read)
            except ConfigError:
                return
            if isinstance(run, ForeignRun):
                screen(run)
            else:
                assert isinstance(run, str) and run
    finally:
        source.close()  # type: ignore[attr-defined]


def _damage_and_read(
    template: Path,
    path: Path,
    cell: tuple[str, str],
    row: int,
    value: object,
    open_source: Callable[[Path], object],
) -> None:
    """The property on a copy of template with one cell damaged; its bytes unchanged after."""
    shutil.copy(template, path)
    _damage(path, *cell, row, value)
    before = tree_digest(path)
    _read_all(lambda: open_source(path))
    assert tree_digest(path) == before


# Opening an Optuna storage runs its schema checks (a third of a second): a smaller budget.
@settings(BUDGET, max_examples=25)
@given(cell=st.sampled_from(OPTUNA_CELLS), row=st.integers(0, 50), value=VALUES)
def test_a_damaged_optuna_storage_reads_as_runs_reasons_or_one_error(
    tmp_path: Path, optuna_template: Path, cell: tuple[str, str], row: int, value: object
) -> None:
    _damage_and_read(
        optuna_template, tmp_path / "study.db", cell, row, value,
        lambda path: read_study(f"sqlite:///{path}", "sweep", "accuracy"),
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
@BUDGET
@given(cell=st.sampled_from(MLFLOW_CELLS), row=st.integers(0, 500), value=VALUES)
def test_a_damaged_mlflow_database_reads_as_runs_reasons_or_one_error(
    tmp_path: Path, mlflow_template: Path, cell: tuple[str, str], row: int, value: object
) -> None:
    _damage_and_read(
        mlflow_template, tmp_path / "mlflow.db", cell, row, value,
        lambda path: read_experiment(f"sqlite:///{path}", "ZQEXPERIMENT", "val_acc", None),
    )  # fmt: skip


@BUDGET
@given(
    which=st.integers(0, 1000),
    content=st.one_of(st.binary(max_size=200), VALUES.map(str).map(str.encode)),
)
def test_a_damaged_mlflow_file_store_reads_as_runs_reasons_or_one_error(
    tmp_path: Path, files_template: Path, which: int, content: bytes
) -> None:
    root = tmp_path / "mlruns"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(files_template, root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    files[which % len(files)].write_bytes(content)
    before = tree_digest(root)
    _read_all(lambda: read_experiment(root.as_uri(), "exp", "val_acc", None))
    assert tree_digest(root) == before
