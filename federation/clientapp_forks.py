"""Flower's ClientApps forked from one process that imported Flower, torch and transformers once.

Flower's SuperExec starts a new `flwr-clientapp`, found by name on PATH, for every message a
member receives, and on a CPU machine its imports (about 5 s of CPU here) took longer than a
small model's round of training. `fed join` starts a fork server beside its SuperNode
(`forked_clientapps`) and puts a `flwr-clientapp` of its own first on the SuperNode's PATH
(clientapp_shim.py); for each message the server forks a child that takes the shim's
arguments, environment, working folder and standard streams and runs Flower's own
`flwr-clientapp` entry point, and the shim exits with the child's status. Each message still
runs in a process of its own that no other message touched: only the imports are shared, as
torch's DataLoader workers share theirs.

It must never: initialize CUDA or start a thread in the server before it forks (a child
inherits neither); fork for a caller of another user (each caller's uid is
checked); or outlive the member that started it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import secrets
import selectors
import shlex
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpoint.federation.processes import start, stop, tool

__all__ = ["MAX_FORKS", "PRELOAD", "flwr_clientapp", "forked_clientapps", "serve"]

#: What the server imports before it serves: what a training or evaluating ClientApp imports.
PRELOAD = (
    "torch",
    "transformers.modeling_utils",
    "flwr.supernode.cli.flwr_clientapp",
    "gridpoint.federation.client_app",
)
#: ClientApps running at once; a shim asking beyond this runs `flwr-clientapp` itself.
MAX_FORKS = 16
#: The largest request a shim may send (its arguments and environment).
MAX_REQUEST_BYTES = 1 << 20
_SHIM = Path(__file__).with_name("clientapp_shim.py")


@contextlib.contextmanager
def forked_clientapps(
    env: dict[str, str], folder: Path, server: Sequence[str] = ()
) -> Iterator[dict[str, str]]:
    """Starts a fork server with env; yields env for the SuperNode, whose ClientApps it forks.

    The shim and the server's log are written in folder (the member's run folder). Where fork
    cannot serve (not Linux), yields env unchanged: Flower starts its own. The server is
    stopped when the block ends, and stops itself should the caller be killed. server: the
    command that serves, given the listening socket's descriptor and the caller's pid as its
    last two arguments (this module's by default).
    """
    if sys.platform != "linux":
        yield env
        return
    # An abstract socket (Linux): nothing on disk to outlive a killed member, and no limit
    # from the length of a run folder's path. Any local process could connect to the name,
    # so the server forks only for callers of this user (SO_PEERCRED).
    name = f"@gridpoint-clientapps-{secrets.token_hex(16)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bound and listening before the server starts: a shim never finds it missing, and
        # one that comes while the server imports waits for it.
        listener.bind("\0" + name[1:])
        listener.listen(MAX_FORKS)
        bin_dir = folder / "clientapps-bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim = bin_dir / "flwr-clientapp"
        argv = [sys.executable, "-I", str(_SHIM), name, tool("flwr-clientapp")]
        shim.write_text("#!/bin/sh\nexec " + shlex.join(argv) + ' "$@"\n')
        shim.chmod(0o700)
        process = start(
            [
                *(server or [sys.executable, "-m", __name__]),
                str(listener.fileno()),
                str(os.getpid()),
            ],
            env,
            folder / "clientapps.log",
            pass_fds=(listener.fileno(),),
        )
    finally:
        listener.close()
    try:
        yield {**env, "PATH": str(bin_dir) + os.pathsep + env.get("PATH", "")}
    finally:
        stop(process)


@dataclass
class _Fork:
    pid: int
    conn: socket.socket
    #: Its shim is gone: the fork was asked to stop, only its exit is awaited.
    hung_up: bool = False


@dataclass
class _Server:
    """The serving loop's state: its socket and the forks it waits for, by pid."""

    listener: socket.socket
    selector: selectors.DefaultSelector
    wakeup: socket.socket
    parent: int
    run: Callable[[], None]
    forks: dict[int, _Fork] = field(default_factory=dict)
    stopping: bool = False


def flwr_clientapp() -> None:
    """Flower's own `flwr-clientapp` entry point, reading sys.argv."""
    from flwr.supernode.cli import flwr_clientapp as entry

    entry()


def serve(
    listener: socket.socket,
    parent: int,
    run: Callable[[], None] = flwr_clientapp,
    preload: Sequence[str] = PRELOAD,
) -> None:
    """Imports preload, then forks for every request on the listening socket a child that
    calls run (with the request's argv, environment, folder and streams), until SIGTERM or
    until parent, the process that started it, is gone."""
    for module in preload:
        importlib.import_module(module)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    server = _Server(listener, selectors.DefaultSelector(), wake_r, parent, run)
    signal.set_wakeup_fd(wake_w.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "stopping", True))
    server.selector.register(listener, selectors.EVENT_READ)
    server.selector.register(wake_r, selectors.EVENT_READ)
    try:
        while not server.stopping and os.getppid() == parent:
            for key, _ in server.selector.select(timeout=1.0):
                if key.fileobj is listener:
                    _accept(server)
                elif key.fileobj is wake_r:
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(4096)
                else:
                    _hung_up(server, key.data)
            _reap(server)
    finally:
        for fork in server.forks.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(fork.pid, signal.SIGTERM)


def _accept(server: _Server) -> None:
    conn, _ = server.listener.accept()
    try:
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            raise ConnectionError("another user")
        if len(server.forks) >= MAX_FORKS:
            conn.sendall(b"busy\n")
            raise ConnectionError("busy")
        conn.settimeout(10.0)
        request, fds = _receive(conn)
    except (OSError, ValueError):
        conn.close()
        return
    # Written out before the fork, so the child does not write them a second time.
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _run_clientapp(server, request, fds)
    for fd in fds:
        os.close(fd)
    server.forks[pid] = _Fork(pid, conn)
    server.selector.register(conn, selectors.EVENT_READ, pid)
    try:
        conn.sendall(f"pid {pid}\n".encode())
    except OSError:
        _hung_up(server, pid)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The shim's request and its three standard streams (ValueError when malformed)."""
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        if len(fds) != 3 or len(data) < 4:
            raise ValueError("a request is a length, a body and three streams")
        (size,) = struct.unpack("!I", data[:4])
        if size > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        body = data[4:]
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("request cut short")
            body += chunk
        request = json.loads(body)
        if not (
            isinstance(request, dict)
            and isinstance(request.get("argv"), list)
            and all(isinstance(a, str) for a in request["argv"])
            and isinstance(request.get("env"), dict)
            and all(isinstance(v, str) for v in request["env"].values())
            and isinstance(request.get("cwd"), str)
        ):
            raise ValueError("a request is argv, env and cwd")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _run_clientapp(server: _Server, request: dict[str, Any], fds: list[int]) -> None:
    """In the child: becomes the shim's ClientApp and never returns to the serving loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        server.selector.close()
        server.listener.close()
        server.wakeup.close()
        for fork in server.forks.values():
            fork.conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        server.run()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _hung_up(server: _Server, pid: int) -> None:
    """The shim closed its end (it was killed): its ClientApp is stopped as it would have been."""
    fork = server.forks[pid]
    fork.hung_up = True
    server.selector.unregister(fork.conn)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def _reap(server: _Server) -> None:
    while server.forks:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fork = server.forks.pop(pid, None)
        if fork is None:
            continue
        if not fork.hung_up:
            server.selector.unregister(fork.conn)
        with contextlib.suppress(OSError):
            fork.conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
        fork.conn.close()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]))
