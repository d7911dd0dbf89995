"""The CLI in this process: `gridpoint ARGS` through `main(argv)`, its output captured by capsys.

For tests of what a command prints and returns without a child process (seconds saved per
call); the real process is still tested end to end where the process itself matters.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gridpoint.node.cli.main import main
from tests.helpers import ROOT


@dataclass(frozen=True)
class Ran:
    """What one command returned and printed."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


def run_main(capsys: pytest.CaptureFixture[str], *args: str, home: Path | None = None) -> Ran:
    """Runs `gridpoint [--home HOME] ARGS` in this process."""
    capsys.readouterr()  # what came before is not this command's
    argv = [*(["--home", str(home)] if home is not None else []), *args]
    before = set(sys.modules)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        _forget_pipelines(before)
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def _forget_pipelines(before: set[str]) -> None:
    """Forgets the study pipelines a command imported (modules from outside the interpreter's
    libraries): as in a fresh process, the next command imports its own `tiny_pipeline` from
    its own folder, not one another test wrote."""
    libraries = (sys.prefix, sys.base_prefix, str(ROOT))
    for name in set(sys.modules) - before:
        where = getattr(sys.modules[name], "__file__", None) or ""
        if where and not where.startswith(libraries):
            del sys.modules[name]
