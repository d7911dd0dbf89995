"""The integrations cost nothing until used: no training library loads with the CLI or the package."""

from __future__ import annotations

import gridpoint
from tests.helpers import loaded_by


def test_the_cli_and_the_integrations_package_load_no_training_library() -> None:
    statements = (
        "from gridpoint.node.cli.main import build_parser; build_parser(); "
        "import gridpoint.integrations, gridpoint.integrations.import_cli"
    )
    assert loaded_by(statements, ("torch", "optuna", "transformers", "mlflow")) == []


def test_the_integrations_are_reachable_from_the_public_api() -> None:
    assert gridpoint.integrations.optuna.Publisher.__name__ == "Publisher"
    assert gridpoint.integrations.transformers.GridpointCallback.__name__ == "GridpointCallback"
