"""The public API is what `gridpoint.__all__` names; the installed package is `gridpoint` alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import gridpoint
from tests.helpers import loaded_by

ROOT = Path(__file__).resolve().parent.parent

EXPORTED = {
    "BaseModelInfo",
    "CurvePoint",
    "CurvePruner",
    "GridpointError",
    "ParamValue",
    "PriorStudy",
    "PriorTrial",
    "RunRecord",
    "SearchDimension",
    "TaskDescriptor",
    "WarmStartSampler",
    "__version__",
    "from_catalog",
    "integrations",
    "record_from_json",
    "record_to_json",
    "validate_record",
}


def test_exported_members_are_pinned_and_each_resolves() -> None:
    assert set(gridpoint.__all__) == EXPORTED
    for name in gridpoint.__all__:
        assert getattr(gridpoint, name) is not None, name


def test_public_types_say_they_belong_to_gridpoint() -> None:
    for name in ("RunRecord", "TaskDescriptor", "GridpointError", "WarmStartSampler"):
        assert getattr(gridpoint, name).__module__.startswith("gridpoint."), name


def test_importing_gridpoint_does_not_load_the_training_stack() -> None:
    statements = "import gridpoint; assert gridpoint.__version__[0].isdigit()"
    assert loaded_by(statements, ("torch", "optuna", "transformers", "flwr", "grpc")) == []


def test_a_wheel_installs_only_the_gridpoint_package(tmp_path: Path) -> None:
    # Prepare: a copy of the checkout, so the build leaves nothing in it.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"),
    )
    # Execute: build a wheel (no dependencies, no network).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("gridpoint-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # Assert
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"gridpoint"}
    for expected in (
        "gridpoint/py.typed",
        "gridpoint/node/daemon/server.py",
        "gridpoint/trainers/study.py",
        "gridpoint/integrations/transformers.py",
        "gridpoint/federation/flower_app/pyproject.toml",
        "gridpoint/node/store/migrations/versions/0001_initial.py",
        "gridpoint/v1/records_pb2.pyi",
    ):
        assert expected in names, expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "gridpoint = gridpoint.node.cli.main:main" in text
    assert "fed = gridpoint.federation.cli:register" in text
    assert "import = gridpoint.integrations.import_cli:register" in text
