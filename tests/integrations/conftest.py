"""Stores shared by the integration tests (writing a fresh MLflow database costs seconds);
tests copy them before changing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.sources import mlflow_file_store, mlflow_store, optuna_study


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten runs of experiment ZQEXPERIMENT (the last one failed) in a tracking database;
    tests copy it before changing it."""
    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    mlflow_store(path, "ZQEXPERIMENT", 10)
    return path


@pytest.fixture(scope="session")
def optuna_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Study `sweep`: eight trials (the seventh pruned) in an Optuna SQLite storage."""
    path = tmp_path_factory.mktemp("optuna") / "study.db"
    optuna_study(path, "sweep", 8)
    return path


@pytest.fixture(scope="session")
def files_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Experiment `exp`: four finished runs in a file store (`mlruns/`) MLflow wrote."""
    root = tmp_path_factory.mktemp("files") / "mlruns"
    mlflow_file_store(root, "exp", 4, steps=3)
    return root
