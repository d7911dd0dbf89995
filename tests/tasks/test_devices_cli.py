"""`tune --devices` is checked before anything starts: no data loaded, nothing published."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_main import run_main
from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("flag", "requested", "message"),
    [
        ("--devices", "cuda", "--devices cuda: torch sees no CUDA GPU"),
        ("--devices", "tpu", "--devices tpu is not a device"),
        ("--devices", "cuda:7", "--devices cuda:7: torch sees no CUDA GPU"),
        ("--devices", "cuda:0,cuda:0", "--devices cuda:0"),
        ("--device", "tpu", "--device tpu is not a device"),
    ],
)
def test_an_unusable_device_is_refused_before_the_pipeline_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, requested: str, message: str
) -> None:
    # Prepare: a pipeline that leaves a mark when it is called.
    home = tmp_path / "node"
    run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    pipeline = (ROOT / "examples" / "tiny_pipeline.py").read_text()
    marker = tmp_path / "pipeline-ran"
    (tmp_path / "tiny_pipeline.py").write_text(
        pipeline.replace(
            '    """(train, eval) as (text, label) pairs."""',
            f'    open({str(marker)!r}, "w").close()',
        )
    )
    study = tmp_path / "study.toml"
    study.write_text((ROOT / "examples" / "tiny-study.toml").read_text())
    # Execute
    result = run_main(capsys, "tune", str(study), "--trials", "1", flag, requested, home=home)
    # Assert
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and message in lines[0], result.stderr
    assert not marker.exists() and not (home / "studies.db").exists()
    assert run_main(capsys, "catalog", "query", "", "--json", home=home).json() == []
