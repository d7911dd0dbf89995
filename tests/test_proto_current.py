"""The committed generated code is exactly what tools/gen_proto.py produces from proto/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_protobuf_code_is_current(tmp_path: Path) -> None:
    # Prepare / Execute
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    # Assert
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed_dir = ROOT / "gridpoint" / "v1"
    committed = sorted(
        p.relative_to(ROOT) for p in committed_dir.iterdir() if p.is_file() and p.suffix != ".pyc"
    )
    assert generated == committed, "run `python tools/gen_proto.py`"
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), (
            f"{rel} is stale: run `python tools/gen_proto.py`"
        )


def test_proto_sources_are_not_an_importable_package() -> None:
    assert not list((ROOT / "proto").rglob("__init__.py"))
