"""The integrations cost nothing until used: no training library loads with the CLI or the package."""

from __future__ import annotations

import subprocess
import sys

import gridpoint


def test_the_cli_and_the_integrations_package_load_no_training_library() -> None:
    code = (
        "import sys; from gridpoint.node.cli.main import build_parser; build_parser(); "
        "import gridpoint.integrations, gridpoint.integrations.import_cli; "
        "print(sorted(m for m in ('torch', 'optuna', 'transformers', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_integrations_are_reachable_from_the_public_api() -> None:
    assert gridpoint.integrations.optuna.Publisher.__name__ == "Publisher"
    assert gridpoint.integrations.transformers.GridpointCallback.__name__ == "GridpointCallback"
