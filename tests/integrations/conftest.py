"""Stores shared by the integration tests: writing a fresh MLflow database costs seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.sources import mlflow_store


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten runs of experiment ZQEXPERIMENT (the last one failed) in a tracking database;
    tests copy it before changing it."""
    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    mlflow_store(path, "ZQEXPERIMENT", 10)
    return path
