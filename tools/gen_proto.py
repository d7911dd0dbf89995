"""Regenerates gridpoint/v1 from proto/gridpoint/v1: the one way generated protobuf code is produced.

Run `python tools/gen_proto.py` after editing a .proto file; tests/test_proto_current.py
regenerates into a temporary folder and fails when the committed code is stale. Never
hand-edit the generated files.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    """All .proto sources, in a stable order."""
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Compiles every .proto under proto/ into out_dir (mirroring proto/'s folders)."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    # The mypy plugins are console scripts installed beside this interpreter.
    bindir = Path(sys.executable).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTO_DIR)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for folder in {(out_dir / p.relative_to(PROTO_DIR)).parent for p in proto_files()}:
        (folder / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: repo)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
