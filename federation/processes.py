"""Starting and stopping the Flower processes gridpoint drives, with the settings they need."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gridpoint.errors import ConfigError, GridpointError
from gridpoint.node.protocol.tls import bind_error

__all__ = [
    "Say",
    "check_port_free",
    "flower_env",
    "free_port",
    "kill_flower_processes_under",
    "listening",
    "new_run_folder",
    "start",
    "stop",
    "tool",
    "wait_for_port",
]

#: Reports one line of progress to the person running the command.
Say = Callable[[str], None]


def tool(name: str) -> str:
    """A Flower console script installed beside this interpreter."""
    return str(Path(sys.executable).parent / name)


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for Flower processes: our settings, and Flower's own tools on PATH.

    The SuperLink and SuperNode start `flower-superexec` by name, so the folder of this
    interpreter's console scripts must be on PATH even when the venv is not activated.
    """
    env = dict(os.environ)
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # The ClientApp trains with torch beside the SuperNode, its SuperExec and, in a
    # federation on one machine, other members. Spinning OpenMP threads then wait on
    # descheduled ones at every barrier: two members on 2 cores trained 6-8x slower.
    # Sleeping waits cost nothing measurable alone; a user's own setting is kept.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """ConfigError, in one line, when host:port cannot be bound (in use, or not ours)."""
    exc = bind_error(host, port)
    if exc is not None:
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise ConfigError(f"--listen {host}:{port} {why}; pick another port, or 0 for a free one")


def listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections at host:port now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if listening(host, port):
            return True
        time.sleep(0.2)
    return False


def start(
    argv: list[str],
    env: dict[str, str],
    log_path: Path,
    pass_fds: tuple[int, ...] = (),
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Starts a process in its own session, its output to log_path (and pass_fds open in it)."""
    log = log_path.open("ab")
    return subprocess.Popen(
        argv,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        pass_fds=pass_fds,
        cwd=cwd,
    )


def stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the process group (a clean unregister), SIGKILL after grace."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def new_run_folder(parent: Path) -> Path:
    """A new folder for one run of a federation: run-001, run-002, ... Earlier runs stay."""
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[4:]) for p in parent.glob("run-*") if p.name[4:].isdigit()]
    for number in range(max(taken, default=0) + 1, 10**6):
        folder = parent / f"run-{number:03d}"
        try:
            folder.mkdir()
        except FileExistsError:  # another `fed host` of the same name took it just now
            continue
        return folder
    raise GridpointError(f"{parent} holds too many runs")


def kill_flower_processes_under(folder: Path) -> int:
    """SIGKILLs every process whose FLWR_HOME lies under folder; returns how many.

    Flower starts its SuperExec, ServerApp and ClientApps detached from the SuperLink or
    SuperNode that launched them; after a SIGKILL of that process they live on as orphans, so
    they are found by the environment they inherited (each run has a FLWR_HOME of its own).
    """
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        homes = [e.removeprefix(b"FLWR_HOME=") for e in environ if e.startswith(b"FLWR_HOME=")]
        if homes and Path(homes[0].decode(errors="replace")).is_relative_to(folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed
