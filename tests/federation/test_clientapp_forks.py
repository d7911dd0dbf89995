"""ClientApps forked by the member's fork server, asked for through the `flwr-clientapp` shim.

Real processes: a server (this module's small `run` in place of Flower's, without the
imports, except in the one test of the real one), the shim found first on the PATH it
yields, as Flower's SuperExec finds it.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpoint.federation.clientapp_forks import forked_clientapps
from gridpoint.federation.clientapp_shim import request
from gridpoint.federation.processes import flower_env

#: A server whose forks echo, exit or sleep as their argv says, in place of Flower's ClientApp.
SERVER = """
import os, socket, sys, time
from pathlib import Path
from gridpoint.federation.clientapp_forks import serve

def run() -> None:
    mode, *rest = sys.argv[1:]
    if mode == "echo":
        print(Path.cwd().name, os.environ.get("PROBE"), *rest, flush=True)
        print("to stderr", file=sys.stderr, flush=True)
    elif mode == "exit":
        raise SystemExit(int(rest[0]))
    elif mode == "sleep":
        Path(rest[0]).write_text(str(os.getpid()))
        time.sleep(3600)

serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]), run, preload=())
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with forked_clientapps(
        flower_env(tmp_path / "flwr"), tmp_path, server=[sys.executable, "-c", SERVER]
    ) as env:
        yield env


def _clientapp(
    env: dict[str, str], *argv: str, cwd: Path | None = None, **kwargs: object
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["flwr-clientapp", *argv],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def _pid_from(path: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the fork never started")


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if status == "Z":  # ended, not reaped yet
            return True
        time.sleep(0.05)
    return False


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the fork server is Linux's")


def test_a_fork_takes_the_shims_arguments_environment_folder_and_streams(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Prepare: a folder and a variable of the caller's own, as a SuperExec's would be.
    folder = tmp_path / "caller"
    folder.mkdir()
    # Execute
    out, err = _clientapp({**env, "PROBE": "seen"}, "echo", "a b", cwd=folder).communicate(
        timeout=30
    )
    # Assert: the fork ran `run` (Flower's own clientapp would refuse "echo").
    assert out == "caller seen a b\n"
    assert err == "to stderr\n"


def test_the_forks_exit_status_and_a_killing_signal_come_back_through_the_shim(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert _clientapp(env, "exit", "3").wait(timeout=30) == 3
    # A SIGTERM to the shim, as Flower stops a ClientApp, reaches the fork, which dies of it.
    shim = _clientapp(env, "sleep", str(tmp_path / "pid"))
    fork = _pid_from(tmp_path / "pid")
    shim.send_signal(signal.SIGTERM)
    assert shim.wait(timeout=30) == -signal.SIGTERM
    assert _gone(fork)


def test_a_shim_killed_outright_takes_its_fork_with_it(env: dict[str, str], tmp_path: Path) -> None:
    shim = _clientapp(env, "sleep", str(tmp_path / "pid"))
    fork = _pid_from(tmp_path / "pid")
    shim.kill()
    shim.wait(timeout=10)
    assert _gone(fork)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_another_user_gets_no_fork(env: dict[str, str], tmp_path: Path) -> None:
    # Any local user can reach an abstract socket: the server forks for its own user only.
    # The shim's request, made by a child of this test that became nobody before it connected.
    script = (tmp_path / "clientapps-bin" / "flwr-clientapp").read_text()
    name = shlex.split(script.splitlines()[1])[4]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        answer = "no answer"
        try:
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect("\0" + name[1:])
                answer = f"forked {request(sock, ['echo', 'x'])}"
        except OSError as exc:
            answer = f"refused: {exc}"
        finally:
            os.write(write, answer.encode())
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as answer:
        assert answer.read().startswith("refused")


def test_the_server_stops_when_the_member_that_started_it_is_killed(tmp_path: Path) -> None:
    marker = f"GRIDPOINT_TEST_{os.getpid()}_{time.monotonic_ns()}"
    member = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from gridpoint.federation.clientapp_forks import forked_clientapps\n"
            "with forked_clientapps({**__import__('os').environ}, Path(sys.argv[1]),"
            " [sys.executable, '-c', sys.argv[2]]):\n"
            "    print('started', flush=True); time.sleep(3600)\n",
            str(tmp_path),
            SERVER,
        ],
        env={**os.environ, marker: "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert member.stdout is not None and member.stdout.readline() == "started\n"
    [server] = [pid for pid in _pids_with(marker) if pid != member.pid]
    member.kill()
    member.wait(timeout=10)
    assert _gone(server)


def test_flowers_own_clientapp_is_forked_and_stopped_by_the_shim(tmp_path: Path) -> None:
    # The real server: Flower's entry point after the imports. Pointed at a Runtime API
    # that is not there, the ClientApp retries until it is stopped.
    marker = f"GRIDPOINT_TEST_{os.getpid()}_{time.monotonic_ns()}"
    with forked_clientapps({**flower_env(tmp_path / "flwr"), marker: "1"}, tmp_path) as env:
        shim = _clientapp(env, "--runtime-api-address", "127.0.0.1:9", "--token", "t", "--insecure")
        deadline = time.monotonic() + 120
        forks: list[int] = []
        while time.monotonic() < deadline and not forks:
            # A fork runs the server's command line (it never executed another program).
            forks = [
                pid
                for pid in _pids_with(marker)
                if b"clientapp_forks" in Path(f"/proc/{pid}/cmdline").read_bytes()
                and _parent(pid) != 1
                and any(_parent(pid) == p for p in _pids_with(marker))
            ]
            time.sleep(0.2)
        assert forks, "no ClientApp was forked"
        shim.send_signal(signal.SIGTERM)
        shim.communicate(timeout=60)
        assert all(_gone(pid) for pid in forks)


def _pids_with(variable: str) -> list[int]:
    """Processes started with variable in their environment (forks keep the server's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{variable}=1".encode() in environ:
                found.append(int(entry.name))
    return found


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0
