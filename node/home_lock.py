"""Which daemon runs on a node home: an exclusive lock, and what `node status` reads.

`node start` takes an exclusive lock on `daemon.lock` in the home for its whole life (the
kernel drops it when the process dies, however it dies) and writes its PID and address
there. A second `node start` on the same home is refused with that PID; `node status` reads
the same file and asks the kernel whether the lock is still held, and `node stop` signals
the PID it names only while the lock is held (so never a process that merely reused the PID).

Must never delete the lock file or write anything but the PID, the address and the start
time into it: the file is read by other processes while the daemon runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from gridpoint.errors import HomeError

__all__ = ["DaemonState", "HeldHome", "hold_home", "running_daemon"]

LOCK_NAME = "daemon.lock"


@dataclass(frozen=True)
class DaemonState:
    """The daemon that holds a home: its process, address and start time."""

    pid: int
    address: str
    started_at: str


def _read(handle: IO[str]) -> DaemonState | None:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "{}")
        return DaemonState(int(data["pid"]), str(data["address"]), str(data["started_at"]))
    except (ValueError, KeyError, TypeError):
        return None


class HeldHome:
    """The lock of a home, held by this process; `announce` records the bound address."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        # At once: until then the file names the previous holder, whose PID may be reused.
        self.announce("")

    def announce(self, address: str) -> None:
        # The one form of a time in gridpoint's output (node/cli/output.py: timestamp()).
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = DaemonState(os.getpid(), address, started)
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps(state.__dict__))
        self._handle.flush()


@contextlib.contextmanager
def hold_home(home_path: Path) -> Iterator[HeldHome]:
    """Holds the home's daemon lock; HomeError naming the PID if another process holds it."""
    path = home_path / LOCK_NAME
    try:
        handle = path.open("a+")
    except OSError as exc:
        raise HomeError(f"cannot write the lock file in {home_path}: {exc.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read(handle)
            who = f"PID {other.pid}, listening on {other.address}" if other else "another process"
            raise HomeError(
                f"a node daemon already runs on {home_path} ({who}); stop it first"
            ) from None
        try:
            yield HeldHome(handle)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def running_daemon(home_path: Path) -> DaemonState | None:
    """The daemon holding the home's lock now, or None when none runs."""
    path = home_path / LOCK_NAME
    if not path.exists():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
