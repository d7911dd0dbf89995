"""run_study's contracts with the node: keep_model after on_trial, heartbeats, devices."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
from sqlalchemy import create_engine, text

from gridpoint.errors import ConfigError, ModelLoadError
from gridpoint.node.store.sql_store import normalize_db_url
from gridpoint.trainers.devices import check_devices
from gridpoint.trainers.results import TrialResult
from gridpoint.trainers.saved_model import TrainedModel
from gridpoint.trainers.study import run_study
from gridpoint.trainers.study_config import load_study_config
from gridpoint.trainers.study_storage import study_storage
from gridpoint.trainers.study_workers import study_workers
from tests.helpers import ROOT

EXAMPLE = (ROOT / "examples" / "tiny-study.toml").read_text()


def _studies_url(db_url: str) -> str:
    """The node's studies storage beside a store at db_url (SQLite file, PostgreSQL schema)."""
    if db_url.startswith("sqlite"):
        return db_url.replace("store.db", "studies.db")
    return f"{normalize_db_url(db_url)}?options=-csearch_path%3Doptuna"


def _study(tmp_path: Path) -> Path:
    (tmp_path / "tiny_pipeline.py").write_text((ROOT / "examples" / "tiny_pipeline.py").read_text())
    path = tmp_path / "study.toml"
    small = EXAMPLE.replace('epochs = { type = "int", low = 4, high = 8 }', "")
    # A range wide enough for a diverging learning rate.
    small = small.replace("low = 1e-4, high = 5e-3", "low = 1e-4, high = 1e9")
    path.write_text(small.replace("n_startup_trials = 2", "n_startup_trials = 9"))
    return path


def test_keep_model_follows_on_trial_for_complete_trials_only(tmp_path: Path) -> None:
    # Prepare: trial 0 diverges (fails), trial 1 completes.
    config = load_study_config(_study(tmp_path))
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    study.enqueue_trial({"learning_rate": 1e9, "batch_size": 32, "warmup_ratio": 0.0})
    study.enqueue_trial({"learning_rate": 3e-3, "batch_size": 32, "warmup_ratio": 0.0})
    events: list[tuple[str, int, str]] = []

    def on_trial(trial: TrialResult) -> None:
        events.append(("trial", trial.number, trial.state))

    def keep(trial: TrialResult, trained: TrainedModel) -> None:
        events.append(("keep", trial.number, trained.method))
        assert trained.model.training is not None and trained.processor is not None

    # Execute
    run_study(
        config, storage, n_trials=2, on_trial=on_trial, keep_model=keep, progress=False,
        devices="cpu",
    )  # fmt: skip
    # Assert
    assert events == [("trial", 0, "failed"), ("trial", 1, "complete"), ("keep", 1, "full")]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")
def test_a_live_trial_is_left_alone_and_a_silent_one_is_failed(tmp_path: Path) -> None:
    # Prepare: two RUNNING trials, one beating now, one whose last beat is a day old.
    config = load_study_config(_study(tmp_path))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=10)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    live, silent = study.ask(), study.ask()
    storage.record_heartbeat(live._trial_id)
    storage.record_heartbeat(silent._trial_id)
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(
            text(
                "UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 day') WHERE trial_id = :t"
            ),
            {"t": silent._trial_id},
        )
    engine.dispose()
    stale: list[int] = []
    # Execute: another worker (holding the study's worker lock) is alive.
    with study_workers(url, config.name, lambda: None) as first:
        run_study(
            config, url, n_trials=1, progress=False, devices="cpu", on_interrupted=stale.append
        )
    # Assert
    states = {
        t.number: t.state for t in optuna.load_study(study_name=config.name, storage=url).trials
    }
    assert first and stale == [silent.number]
    assert states[live.number] == optuna.trial.TrialState.RUNNING
    assert states[silent.number] == optuna.trial.TrialState.FAIL
    assert states[2] == optuna.trial.TrialState.COMPLETE


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")
def test_a_run_that_starts_alone_fails_every_running_trial_at_once(
    tmp_path: Path, db_url: str
) -> None:
    # Prepare: two RUNNING trials that beat a moment ago; their process is gone (a second
    # Ctrl-C, a kill), so nobody holds the study's worker lock.
    config = load_study_config(_study(tmp_path))
    url = _studies_url(db_url)
    storage = study_storage(url)
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    cut = [study.ask(), study.ask()]
    for trial in cut:
        storage.record_heartbeat(trial._trial_id)
    stale: list[int] = []
    # Execute: at once, well within the heartbeat grace (no new trial needed to see it).
    run_study(config, url, n_trials=0, progress=False, devices="cpu", on_interrupted=stale.append)
    # Assert
    trials = optuna.load_study(study_name=config.name, storage=storage).trials
    assert sorted(stale) == [t.number for t in cut]
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]


def test_the_worker_lock_is_shared_and_only_the_first_holder_is_alone(
    tmp_path: Path, db_url: str
) -> None:
    url = _studies_url(db_url)
    calls: list[str] = []
    with (
        study_workers(url, "s", lambda: calls.append("first")) as first,
        study_workers(url, "s", lambda: calls.append("second")) as second,
        study_workers(url, "other", lambda: calls.append("other")) as other,
    ):
        assert (first, second, other) == (True, False, True)
    with study_workers(url, "s", lambda: calls.append("again")) as again:
        assert again
    assert calls == ["first", "other", "again"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('config = { model_type = "no-such-architecture" }', "not a valid 'no-such-architecture'"),
        ('hub_id = "zq-org/not-in-the-cache"', "cannot load the base model from the local"),
    ],
)
def test_a_model_that_cannot_load_stops_the_study_before_any_trial(
    tmp_path: Path, model: str, message: str
) -> None:
    # Prepare: the example study with a model that cannot load.
    path = _study(tmp_path)
    text = path.read_text()
    start = text.index("[model]")
    end = text.index("\n[", start + 1)
    path.write_text(text[:start] + f"[model]\n{model}\n" + text[end:])
    config = load_study_config(path)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # Execute
    with pytest.raises(ModelLoadError, match=message):
        run_study(config, url, n_trials=3, progress=False, devices="cpu")
    # Assert: the study's budget is untouched: no trial, not even a study.
    assert optuna.get_all_study_names(url) == []


def test_dropout_is_searched_applied_to_every_dropout_layer_and_published(
    tmp_path: Path,
) -> None:
    # Prepare: the example study, searching dropout too.
    from gridpoint.node.config import AnonymizerConfig
    from gridpoint.node.publishing.anonymize import anonymize
    from gridpoint.node.store.base import PrivateRun, RunDetail

    path = _study(tmp_path)
    path.write_text(
        path.read_text().replace(
            "[search_space]\n",
            '[search_space]\ndropout = { type = "float", low = 0.2, high = 0.4 }\n',
        )
    )
    config = load_study_config(path)
    seen: list[tuple[TrialResult, set[float]]] = []

    def keep(trial: TrialResult, trained: TrainedModel) -> None:
        probabilities = {m.p for m in trained.model.modules() if isinstance(m, torch.nn.Dropout)}
        seen.append((trial, probabilities))

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name=config.name, storage=storage, direction="maximize")
    study.enqueue_trial(
        {"learning_rate": 3e-3, "batch_size": 32, "warmup_ratio": 0.0, "dropout": 0.3}
    )
    # Execute
    run_study(config, storage, n_trials=1, keep_model=keep, progress=False, devices="cpu")
    # Assert
    [(trial, probabilities)] = seen
    dropout = trial.params["dropout"]
    assert dropout == 0.3 and probabilities == {0.3}
    detail = RunDetail(
        trial.state, params=dict(trial.params), search_space=config.search_space, task=trial.task
    )
    record = anonymize(
        PrivateRun(config.name, trial.number, detail), secret=b"k" * 32, policy=AnonymizerConfig()
    )
    assert record.hyperparameters["dropout"] == dropout
    assert any(d.name == "dropout" for d in record.search_space)


def test_a_worker_refuses_a_study_nobody_started(tmp_path: Path) -> None:
    config = load_study_config(_study(tmp_path))
    with pytest.raises(ConfigError, match="--worker: this node's study storage has no study"):
        run_study(config, f"sqlite:///{tmp_path / 's.db'}", worker=True, progress=False)


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("tpu", "--devices tpu is not a device"),
        ("cuda", "torch sees no CUDA GPU"),
        ("cuda:7", "torch sees no CUDA GPU"),
        ("cpu,cpu", "a device is named twice"),
        ("cpu,auto", "give auto, cpu, or devices like"),
        ("cpu,", "give auto, cpu, or devices like"),
    ],
)
def test_unusable_devices_are_refused_naming_them(requested: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_devices(requested)


def test_auto_is_every_gpu_or_the_cpu() -> None:
    import torch

    expected = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    assert check_devices("auto") == expected
    assert check_devices("cpu") == ["cpu"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")
def test_parallel_trials_hand_their_results_over_one_at_a_time(tmp_path: Path) -> None:
    # Prepare: two trial threads (on the CPU twice: the same code path as two GPUs).
    from gridpoint.trainers.study import _run

    config = load_study_config(_study(tmp_path))
    busy, overlapped, numbers = threading.Lock(), [], []

    def on_trial(trial: TrialResult) -> None:
        if not busy.acquire(blocking=False):
            overlapped.append(trial.number)
            return
        try:
            time.sleep(0.5)  # a slow store write: the other thread must wait for it
            numbers.append(trial.number)
        finally:
            busy.release()

    # Execute
    summary = _run(
        config, f"sqlite:///{tmp_path / 's.db'}", ["cpu", "cpu"], 4, on_trial, None, False,
        False, lambda _n: None, None,
    )  # fmt: skip
    # Assert
    assert overlapped == [] and sorted(numbers) == [0, 1, 2, 3]
    assert [t.number for t in summary.trials] == [0, 1, 2, 3]
