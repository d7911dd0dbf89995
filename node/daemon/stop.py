"""`gridpoint node stop`: ask this home's daemon to stop, wait a bounded time, then make it.

The daemon is the process that holds the home's lock (node/home_lock.py); it is signalled only while
it holds it, so a PID reused by another process is never touched. SIGTERM first (the daemon
drains calls and closes its store, run.py); if the home is still held after the timeout,
SIGKILL, which the kernel cannot refuse and which releases the lock with the process.

Must never: signal a process that does not hold this home's lock, or wait without bound.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from gridpoint.errors import HomeError
from gridpoint.node.home_lock import running_daemon

__all__ = ["KILL_WAIT_S", "Stopped", "stop_daemon"]

#: How long a SIGKILLed daemon may take to be gone (the kernel's work, not the daemon's).
KILL_WAIT_S = 5.0
_POLL_S = 0.05


@dataclass(frozen=True)
class Stopped:
    """What `node stop` did: the daemon's PID (None: none ran), how long, whether killed."""

    pid: int | None
    seconds: float = 0.0
    killed: bool = False


def _gone(home_path: Path, pid: int) -> bool:
    """The home released and the process ended (or no longer ours to see)."""
    if running_daemon(home_path) is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the PID now belongs to another user's process: ours is gone
        return True
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    """An ended process its parent has not reaped yet (Linux; elsewhere: not known)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def _wait(home_path: Path, pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(home_path, pid):
            return True
        time.sleep(_POLL_S)
    return _gone(home_path, pid)


def _signal(home_path: Path, pid: int, signum: signal.Signals) -> None:
    holder = running_daemon(home_path)
    if holder is None or holder.pid != pid:
        return  # it stopped (and the PID may already be another process's)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError:
        raise HomeError(
            f"the daemon of {home_path} (PID {pid}) belongs to another user: stop it as that user"
        ) from None


def stop_daemon(home_path: Path, timeout_s: float) -> Stopped:
    """Stops the home's daemon: SIGTERM, up to timeout_s for it to finish, then SIGKILL."""
    daemon = running_daemon(home_path)
    if daemon is None:
        return Stopped(None)
    started = time.monotonic()
    _signal(home_path, daemon.pid, signal.SIGTERM)
    if _wait(home_path, daemon.pid, timeout_s):
        return Stopped(daemon.pid, time.monotonic() - started)
    _signal(home_path, daemon.pid, signal.SIGKILL)
    if _wait(home_path, daemon.pid, KILL_WAIT_S):
        return Stopped(daemon.pid, time.monotonic() - started, killed=True)
    raise HomeError(
        f"the daemon of {home_path} (PID {daemon.pid}) still holds the home after SIGKILL: "
        "look at that process"
    )
