"""Real run sources for the integration tests and bench/import_rate.py: MLflow and Optuna on SQLite.

`mlflow_store` logs runs through MLflow's client (as a team's code would); for thousands of
runs, `bulk=True` writes the same rows through MLflow's own table models in one transaction
(the client takes three commits a run). Either way MLflow's client reads them back.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
import time
import uuid
import warnings
from pathlib import Path

#: A parameter and a metric no vocabulary holds: reported, never published.
PRIVATE_PARAM, PRIVATE_METRIC = "data_path", "gpu_mem_gb"


def mlflow_store(
    path: Path, experiment: str, n_runs: int, *, steps: int = 5, bulk: bool = False
) -> str:
    """A tracking store at path with n_runs finished runs (every tenth failed); its URI."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = f"sqlite:///{path}"
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    start = len(client.search_runs([experiment_id], max_results=50_000))
    if bulk:
        _bulk_runs(uri, experiment_id, start, n_runs, steps)
        return uri
    for i in range(start, start + n_runs):
        run = client.create_run(experiment_id, run_name=f"run-{i}")
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, step)
            for step in range(steps)
            for key, value in (
                ("val_acc", 0.5 + 0.05 * step + 0.001 * i),
                ("loss", 1.0 - 0.1 * step),
            )
        ]
        metrics.append(Metric(PRIVATE_METRIC, 3.5, now, 0))
        params = [
            Param("lr", str(1e-4 * (1 + i % 5))),
            Param("batch_size", "16"),
            Param(PRIVATE_PARAM, "/data/ZQCANARYMLFLOW"),
        ]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, "FAILED" if i % 10 == 9 else "FINISHED")
    return uri


def _bulk_runs(uri: str, experiment_id: str, start: int, n_runs: int, steps: int) -> None:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(uri)
    now = int(time.time() * 1000)
    with Session(engine) as session:
        for i in range(start, start + n_runs):
            run_id = uuid.uuid4().hex
            session.add(
                SqlRun(
                    run_uuid=run_id,
                    name=f"run-{i}",
                    source_type="LOCAL",
                    source_name="",
                    entry_point_name="",
                    user_id="bench",
                    status="FAILED" if i % 10 == 9 else "FINISHED",
                    start_time=now + i,
                    end_time=now + i + 1,
                    source_version="",
                    lifecycle_stage="active",
                    artifact_uri="",
                    experiment_id=int(experiment_id),
                )
            )
            for step in range(steps):
                for key, value in (("val_acc", 0.5 + 0.05 * step), ("loss", 1.0 - 0.1 * step)):
                    session.add(SqlMetric(key=key, value=value, timestamp=now, step=step, is_nan=False, run_uuid=run_id))  # fmt: skip
            for key, value in (("val_acc", 0.5 + 0.05 * (steps - 1)), ("loss", 1.0 - 0.1 * (steps - 1))):  # fmt: skip
                session.add(SqlLatestMetric(key=key, value=value, timestamp=now, step=steps - 1, is_nan=False, run_uuid=run_id))  # fmt: skip
            session.add(SqlParam(key="lr", value=str(1e-4 * (1 + i % 5)), run_uuid=run_id))
            session.add(SqlParam(key=PRIVATE_PARAM, value="/data/ZQCANARYMLFLOW", run_uuid=run_id))
        session.commit()
    engine.dispose()


def optuna_study(path: Path, name: str, n_trials: int, *, steps: int = 4) -> str:
    """An Optuna study in a SQLite storage with n_trials finished trials; its storage URL."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial
    from sqlalchemy import event

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    storage = optuna.storages.RDBStorage(url)
    # One commit a trial: without waiting for the disk on each, thousands take seconds.
    event.listen(storage.engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
    storage.engine.dispose()
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy"])
    space = {
        "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
        "batch_size": CategoricalDistribution([8, 16, 32]),
        "optimizer": CategoricalDistribution(["adamw", "sgd"]),
    }
    trials = []
    for i in range(n_trials):
        pruned = i % 7 == 6
        trials.append(
            create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else 0.6 + 0.001 * i,
                params={
                    "learning_rate": 1e-4 * (1 + i % 9),
                    "batch_size": (8, 16, 32)[i % 3],
                    "optimizer": ("adamw", "sgd")[i % 2],
                },
                distributions=space,
                intermediate_values={s: 0.5 + 0.02 * s for s in range(steps)},
            )
        )
    study.add_trials(trials)
    return url


def mlflow_file_store(root: Path, experiment: str, n_runs: int, *, steps: int = 5) -> str:
    """A file store (`mlruns/`) at root with n_runs runs, written by MLflow itself; its URI."""
    import os

    from mlflow.tracking import MlflowClient

    previous = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        uri = root.as_uri()
        client = MlflowClient(tracking_uri=uri)
        experiment_id = client.create_experiment(experiment)
        for i in range(n_runs):
            run = client.create_run(
                experiment_id, run_name=f"run-{i}", start_time=1_700_000_000_000 + i
            )
            for step in range(steps):
                client.log_metric(
                    run.info.run_id, "val_acc", 0.5 + 0.05 * step + 0.001 * i, step=step
                )
            client.log_metric(run.info.run_id, PRIVATE_METRIC, 3.5)
            client.log_param(run.info.run_id, "lr", str(1e-4 * (1 + i)))
            client.log_param(run.info.run_id, PRIVATE_PARAM, "/data/ZQCANARYMLFLOW")
            client.set_terminated(run.info.run_id, "FAILED" if i % 10 == 9 else "FINISHED")
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE")
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = previous
    return uri


def tree_digest(path: Path) -> str:
    """The bytes of a file, or of every file under a folder with their names: a source
    read-only really was not written if this is the same before and after."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def damaged_copy(template: Path, path: Path, sql: str) -> Path:
    """A copy of a SQLite store at path with sql (which damages it) run on it."""
    shutil.copy(template, path)
    with sqlite3.connect(path) as db:
        db.executescript(sql)
    db.close()
    return path
