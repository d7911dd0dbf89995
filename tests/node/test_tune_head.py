"""`tune` of a study with `[training] trainable = "head"`: its records say the head trained.

One tiny trial through the command line, in this process (tests/cli_main.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_main import run_main
from tests.federation.test_head_only import PIPELINE, STUDY  # the same head-only study
from tests.helpers import MakeHome

pytestmark = pytest.mark.slow


def test_a_head_only_study_publishes_its_trials_as_method_head(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    home = make_home("A")
    (tmp_path / "reviews.py").write_text(PIPELINE)
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    # Execute
    tuned = run_main(capsys, "tune", str(study), "--trials", "1", "--json", home=home.path).json()
    heads = run_main(
        capsys, "catalog", "query", "model.method = 'head'", "--json", home=home.path
    ).json()
    # Assert: the one trial is published, and says that only the head trained.
    [trial] = tuned["trials"]
    assert trial["state"] == "complete" and [r["id"] for r in heads] == [trial["record_id"]]
