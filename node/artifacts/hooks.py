"""The promotion hook: a local command run when a registered model's alias changes.

run_hook() starts the command of config.toml's `[registry] on_promotion` (split like a shell
line, run without a shell, in a session of its own), writes the event as one JSON document on
its stdin, and waits at most the configured seconds; then it stops the command's whole
process group. Whatever happens is an outcome, logged as one line when it fails: a hook never
raises, never blocks a change longer than its timeout, and never undoes one.

Must never send the event anywhere but the command's stdin, nor keep more of the command's
output than the last line of its last few hundred bytes (for the log).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gridpoint.errors import in_words

__all__ = ["HookOutcome", "run_hook"]

_log = logging.getLogger("gridpoint.registry")
#: Bytes of the command's output read back for the log line.
_TAIL_BYTES = 400


@dataclass(frozen=True)
class HookOutcome:
    """How the hook ended: ok, its exit status (None: not started or stopped), in words."""

    ok: bool
    exit_code: int | None
    seconds: float
    message: str


def run_hook(
    command: str, event: Mapping[str, Any], timeout_s: float, *, label: str
) -> HookOutcome:
    """Runs command with event as JSON on stdin, for at most timeout_s; never raises."""
    start = time.monotonic()
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return _failed(label, None, start, f"registry.on_promotion does not parse ({exc})")
    if not argv:
        return _failed(label, None, start, "registry.on_promotion is empty")
    payload = json.dumps(event, sort_keys=True).encode()
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        except OSError as exc:
            return _failed(label, None, start, f"cannot start {argv[0]!r}: {in_words(exc)}")
        assert process.stdin is not None
        # The event is a few hundred bytes: it fits the pipe even if the hook never reads;
        # a hook that exits without reading it is judged by its exit status.
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(payload)
            process.stdin.close()
        try:
            code = process.wait(timeout=max(0.0, timeout_s - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            _stop(process)
            return _failed(label, None, start, f"still running after {timeout_s:g} s: stopped")
        if code != 0:
            return _failed(label, code, start, f"exit status {code}{_last_line(output)}")
    return HookOutcome(True, 0, time.monotonic() - start, "ok")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kills the hook's whole session (a shell script's children too)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(output: Any) -> str:
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - _TAIL_BYTES))
    text = output.read().decode("utf-8", "replace")
    lines = ["".join(c for c in line if c.isprintable()).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return f": {lines[-1][:200]}" if lines else ""


def _failed(label: str, code: int | None, start: float, message: str) -> HookOutcome:
    _log.warning("promotion hook for %s failed: %s (the change stands)", label, message)
    return HookOutcome(False, code, time.monotonic() - start, message)
