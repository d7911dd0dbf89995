"""Optuna: the study callback publishes each finished trial; importing the storage adds nothing twice."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import optuna
import pytest

from gridpoint.integrations.optuna import Publisher
from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import open_store
from gridpoint.schema import RunRecord, record_to_json
from tests.cli_main import run_main
from tests.helpers import ROOT, MakeHome
from tests.integrations.sources import optuna_study

TASK = ("--task", "text-classification", "--train-size", "5000", "--language", "en")


def _records(home: NodeHome) -> list[RunRecord]:
    store = open_store(home.db_url())
    try:
        return [r.record for r in store.query(None, limit=10_000)]
    finally:
        store.close()


def _objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [8, 16])
    trial.suggest_categorical("optimizer", ["adamw", "sgd"])
    for step in range(3):
        trial.report(0.5 + step * lr, step)
    if trial.number == 2:
        raise optuna.TrialPruned
    if trial.number == 3:
        raise RuntimeError("a bug in the objective")
    return 0.5 + 3 * lr


def test_publisher_publishes_finished_trials_and_reimport_adds_none(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    home = make_home("A")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", storage=storage, study_name="ZQSTUDY")
    publisher = Publisher(home.path, "text-classification", train_size=5000, metric="accuracy")
    # Execute
    study.optimize(_objective, n_trials=5, callbacks=[publisher], catch=(RuntimeError,))
    # Assert: four finished trials (one pruned), the failed one kept out.
    records = {r.trial: r for r in _records(home)}
    imported = {n for n, o in publisher.outcomes.items() if o.status == "imported"}
    assert len(records) == 4 and imported == {0, 1, 2, 4}
    assert publisher.outcomes[3].status == "skipped" and publisher.outcomes[3].record is None
    by_number = {n: o.record for n, o in publisher.outcomes.items()}
    for trial in study.trials:
        record = by_number.get(trial.number)
        if trial.state.name == "FAIL":
            assert record is None
            continue
        assert record is not None and record.trial in records
        assert record.hyperparameters == {
            "learning_rate": trial.params["learning_rate"],
            "batch_size": trial.params["batch_size"],
        }
        assert [(p.step, p.metric, p.value) for p in record.curve] == [
            (s, "accuracy", v) for s, v in sorted(trial.intermediate_values.items())
        ]
        assert {d.name for d in record.search_space} == {"learning_rate", "batch_size"}
        if trial.state.name == "COMPLETE":
            assert record.status == "complete" and record.metrics == {"accuracy": trial.value}
        else:
            assert record.status == "pruned" and record.metrics == {}
    # Importing the same storage later finds every trial already there.
    summary = run_main(
        capsys, "import", "optuna", "--storage", storage, "--study", "ZQSTUDY",
        "--metric", "accuracy", *TASK, "--json", home=home.path,
    ).json()  # fmt: skip
    assert (summary["imported"], summary["already_present"]) == (0, 4)
    assert [s["reason"] for s in summary["skipped"]] == ["failed: only finished runs are published"]
    assert len(_records(home)) == 4


def test_import_optuna_dry_run_writes_nothing_then_imports_each_trial_once(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    home = make_home("A")
    storage = optuna_study(tmp_path / "o.db", "sweep", 10)
    args = ("import", "optuna", "--storage", storage, "--study", "sweep", *TASK)
    # Execute
    dry = run_main(capsys, *args, "--dry-run", "--json", home=home.path).json()
    after_dry_run = len(_records(home))
    first = run_main(capsys, *args, "--json", home=home.path).json()
    again = run_main(capsys, *args, "--json", home=home.path).json()
    # Assert
    assert dry["imported"] == 10 and after_dry_run == 0 and len(_records(home)) == 10
    assert [r["record"]["hyperparameters"] for r in dry["records"]][0] == {
        "batch_size": 8,
        "learning_rate": 1e-4,
    }
    assert (first["imported"], first["already_present"]) == (10, 0)
    assert (again["imported"], again["already_present"]) == (0, 10)
    left = {(n["kind"], n["name"]) for n in first["not_published"]}
    assert left == {("param", "optimizer"), ("search_space", "optimizer")}
    # The dry run showed exactly the records then published.
    published = sorted(json.dumps(record_to_json(r), sort_keys=True) for r in _records(home))
    assert published == sorted(json.dumps(r["record"], sort_keys=True) for r in dry["records"])


def test_import_refuses_a_missing_storage_file_in_one_line(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    missing = tmp_path / "nothing.db"
    result = run_main(
        capsys, "import", "optuna", "--storage", f"sqlite:///{missing}", "--study", "s", *TASK,
        home=home.path,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("error: no SQLite file")
    assert not missing.exists()


@pytest.mark.parametrize("train_size", ["0"])
def test_import_needs_the_training_set_size(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, train_size: str
) -> None:
    home = make_home("A")
    storage = optuna_study(tmp_path / "o.db", "sweep", 1)
    result = run_main(
        capsys, "import", "optuna", "--storage", storage, "--study", "sweep", "--task",
        "text-classification", "--train-size", train_size, home=home.path,
    )  # fmt: skip
    assert result.returncode == 1 and "--train-size" in result.stderr


def test_the_readme_import_optuna_example_runs_as_written(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: a study that never named its metric, as most are; the README's command with
    # its placeholders filled in.
    home = make_home("A")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(direction="maximize", storage=storage, study_name="sweep")
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-5, 1e-3, log=True), n_trials=2)
    readme = (ROOT / "README.md").read_text().replace("\\\n", " ")
    [line] = [x for x in readme.splitlines() if x.startswith("gridpoint import optuna")]
    argv = shlex.split(line.replace("sqlite:///study.db", storage).replace("NAME", "sweep"))
    # Execute
    ran = run_main(capsys, *argv[1:], "--json", home=home.path)
    # Assert
    assert ran.json()["imported"] == 2
