"""Apps forked by a fork server, asked for through the shim (here: a member's `flwr-clientapp`).

Real processes: a server (this module's small `run` in place of Flower's, without the
imports), the shim found first on the PATH it yields, as Flower's SuperExec finds it. The
real servers, forking Flower's own ClientApps and ServerApps, are in
tests/federation/test_rounds.py.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpoint.federation.app_forks import APPS, CLIENTAPP, FlowerApp, forked_apps
from gridpoint.federation.app_shim import address, connect, request
from gridpoint.federation.processes import flower_env

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the fork server is Linux's")

#: A server whose forks echo, exit or wait as their argv says, in place of Flower's ClientApp.
SERVER = """
import os, random, signal, socket, sys, time
from pathlib import Path
import numpy
from gridpoint.federation.app_forks import CLIENTAPP, serve

def run() -> None:
    mode, *rest = sys.argv[1:]
    if mode == "echo":
        print(Path.cwd().name, os.environ.get("PROBE"), *rest, flush=True)
        print("to stderr", file=sys.stderr, flush=True)
    elif mode == "exit":
        raise SystemExit(int(rest[0]))
    elif mode == "draw":
        import torch  # imported, and drawn from, by the server before it forked: see below

        print(numpy.random.randint(1 << 30), torch.randint(1 << 30, (1,)).item(), flush=True)
    elif mode in ("wait", "trap"):
        if mode == "trap":  # as Flower does: a handler of its own that ends with a status
            signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
        Path(rest[0]).write_text(str(os.getpid()))
        time.sleep(3600)

if os.environ.get("DRAW_FIRST"):  # both generators in use before the forks, as after imports
    import torch

    numpy.random.randint(2), torch.randint(2, (1,))
serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]), CLIENTAPP, run, preload=())
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with forked_apps(
        CLIENTAPP, flower_env(tmp_path / "flwr"), tmp_path, server=[sys.executable, "-c", SERVER]
    ) as env:
        yield env


def _clientapp(env: dict[str, str], *argv: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["flwr-clientapp", *argv],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _shim_command(folder: Path, app: FlowerApp = CLIENTAPP) -> list[str]:
    """The shim's command as its script holds it: python, -I, shim, name, server pid, installed."""
    script = (folder / f"{app.files}-bin" / app.tool).read_text()
    return shlex.split(script.splitlines()[1].removeprefix("exec "))[:-1]


def _pid_from(path: Path) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError("the fork never started")


def _gone(pid: int, within: float = 10.0, zombie: bool = False) -> bool:
    """Whether pid ended (and was reaped, unless zombie: a parent that is not ours)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if zombie and state == "Z":
            return True
        time.sleep(0.05)
    return False


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


def test_each_fork_draws_its_own_random_numbers(tmp_path: Path) -> None:
    server_env = {**flower_env(tmp_path / "flwr"), "DRAW_FIRST": "1"}
    with forked_apps(CLIENTAPP, server_env, tmp_path, server=[sys.executable, "-c", SERVER]) as env:
        draws = [_clientapp(env, "draw").communicate(timeout=60)[0].split() for _ in range(3)]
    assert all(len(d) == 2 for d in draws)
    assert len({d[0] for d in draws}) == 3  # numpy's global generator
    assert len({d[1] for d in draws}) == 3  # torch's default generator


def test_the_forks_status_comes_back_and_a_signal_to_the_shim_reaches_the_fork(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert _clientapp(env, "exit", "3").wait(timeout=30) == 3
    # A SIGTERM to the shim, as Flower stops a ClientApp, reaches the fork, whose handler
    # ends it with 7: the shim exits with 7, and the server reaped the fork.
    shim = _clientapp(env, "trap", str(tmp_path / "pid"))
    fork = _pid_from(tmp_path / "pid")
    shim.send_signal(signal.SIGTERM)
    assert shim.wait(timeout=30) == 7
    assert _gone(fork)


def test_a_fork_killed_outright_kills_its_shim_the_same_way(
    env: dict[str, str], tmp_path: Path
) -> None:
    # As the kernel's OOM killer would.
    shim = _clientapp(env, "wait", str(tmp_path / "pid"))
    os.kill(_pid_from(tmp_path / "pid"), signal.SIGKILL)
    assert shim.wait(timeout=30) == -signal.SIGKILL


def test_a_shim_killed_outright_takes_its_fork_with_it(env: dict[str, str], tmp_path: Path) -> None:
    shim = _clientapp(env, "wait", str(tmp_path / "pid"))
    fork = _pid_from(tmp_path / "pid")
    shim.kill()
    shim.wait(timeout=10)
    assert _gone(fork)


def test_bad_and_slow_requests_end_alone_and_the_server_serves_the_others(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Prepare: a fork at work, and the server's name and pid as the shim has them.
    working = _clientapp(env, "wait", str(tmp_path / "pid"))
    fork = _pid_from(tmp_path / "pid")
    _, _, _, name, server, _ = _shim_command(tmp_path)
    devnull = os.open(os.devnull, os.O_RDWR)
    streams = [devnull] * 3
    bad = [
        b"\x00\x00\x00\x05{",  # cut short, and no streams
        struct.pack("!I", 2 << 20) + b"[",  # past the size bound
        b"",  # connects and says nothing
    ]
    deep = b"[" * 100_000 + b"]" * 100_000  # nested past Python's recursion limit
    callers = []
    # Execute
    for body in bad:
        sock = connect(name, int(server))
        if body:
            sock.sendall(body)
        callers.append(sock)
    sock = connect(name, int(server))
    socket.send_fds(sock, [struct.pack("!I", len(deep)) + deep], streams)
    callers.append(sock)
    started = time.monotonic()
    answered = _clientapp(env, "exit", "4").wait(timeout=30)
    # Assert: the good request was answered by a fork, the silent caller cut off within the
    # request's time bound, the fork at work untouched.
    assert answered == 4
    assert time.monotonic() - started < 20
    assert not _gone(fork, within=0.5)
    for sock in callers:
        sock.settimeout(10)
        assert sock.recv(64) == b""  # closed by the server, no fork
        sock.close()
    os.close(devnull)
    working.kill()


@pytest.mark.parametrize("app", APPS.values(), ids=APPS.keys())
def test_without_its_server_the_shim_runs_flowers_own_app(app: FlowerApp, tmp_path: Path) -> None:
    with forked_apps(
        app, flower_env(tmp_path / "flwr"), tmp_path, server=[sys.executable, "-c", SERVER]
    ):
        pass
    # The server is gone: Flower's own app, which does not know "echo", answers.
    shim = subprocess.run(
        [*_shim_command(tmp_path, app), "echo", "x"], capture_output=True, text=True, timeout=60
    )
    assert shim.returncode == 2
    assert f"usage: {app.tool}" in shim.stderr and shim.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_another_user_gets_no_fork(env: dict[str, str], tmp_path: Path) -> None:
    # Any local user can reach an abstract socket: the server forks for its own user only.
    # The shim's request, made by a child of this test that became nobody before it connected.
    _, _, _, name, server, _ = _shim_command(tmp_path)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        answer = "no answer"
        try:
            try:
                os.setuid(65534)
            except OSError:
                answer = "could not become nobody"
                raise
            sock = connect(name, int(server))
            answer = f"forked {request(sock, ['echo', 'x'])}"
        except OSError as exc:
            answer = answer if answer != "no answer" else f"refused: {exc}"
        finally:
            os.write(write, answer.encode())
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    if answer == "could not become nobody":
        pytest.skip(answer)
    assert answer.startswith("refused")


def test_the_shim_hands_nothing_to_a_socket_that_is_not_its_server(tmp_path: Path) -> None:
    # Once a server is gone its name is free: anyone may bind it. The shim checks that the
    # listener is the server's pid before it sends its environment, token and streams.
    with forked_apps(
        CLIENTAPP, flower_env(tmp_path / "flwr"), tmp_path, server=[sys.executable, "-c", SERVER]
    ):
        pass
    _, _, _, name, _, _ = _shim_command(tmp_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as impostor:
        impostor.bind(address(name))
        impostor.listen(1)
        shim = subprocess.run(
            [*_shim_command(tmp_path), "echo", "x"], capture_output=True, text=True, timeout=60
        )
        impostor.settimeout(0.5)
        conn, _ = impostor.accept()
        with conn:
            conn.settimeout(0.5)
            assert conn.recv(4096) == b""  # connected, checked, closed: nothing sent
    assert shim.returncode == 2 and "usage: flwr-clientapp" in shim.stderr


def test_the_server_stops_when_the_member_that_started_it_is_killed(tmp_path: Path) -> None:
    marker = f"GRIDPOINT_TEST_{os.getpid()}_{time.monotonic_ns()}"
    member = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time\n"
            "from pathlib import Path\n"
            "from gridpoint.federation.app_forks import CLIENTAPP, forked_apps\n"
            "with forked_apps(CLIENTAPP, dict(os.environ), Path(sys.argv[1]),"
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
    # Its new parent is not this test, which cannot reap it.
    assert _gone(server, zombie=True)


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
