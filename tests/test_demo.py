"""The main job's quick path runs as a new user would run it: `./dev demo --quick`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_the_quick_demo_publishes_syncs_and_queries_on_two_nodes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gridpoint.node.demo", "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "catalog sync" in result.stdout and "--peers --json" in result.stdout
    assert "demo finished" in result.stdout
    for home in ("alpha", "beta"):
        assert (tmp_path / home / "catalog.db").exists()
    assert (tmp_path / "beta-private" / "daemon.log").exists()
