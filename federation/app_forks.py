"""Flower's apps forked from one process that imported Flower, torch and transformers once.

Flower's SuperExec starts a new `flwr-clientapp`, found by name on PATH, for every message a
member receives, and a new `flwr-serverapp` for every run a host submits; on a CPU machine
their imports (5-6 s of CPU here) took longer than a small model's round of training.
`fed join` and `fed host` start a fork server beside their SuperNode or SuperLink
(`forked_apps`) and put a `flwr-clientapp` or `flwr-serverapp` of their own first on its
PATH (app_shim.py); for each request the server forks a child that takes the shim's
arguments, environment, working folder and standard streams and runs Flower's own entry
point, and the shim exits with the child's status. Each message or run still runs in a
process of its own that no other touched: only the imports are shared, as torch's
DataLoader workers share theirs, and each fork draws fresh random seeds.

It must never: initialize CUDA before it forks (a child could not use it; the server refuses
to serve if an import did); fork for a caller of another user (each caller's uid is
checked); let one caller's request stop or stall it for the others (each request is bounded
in bytes and time, and any failure ends that request only); or outlive the command that
started it.
"""

from __future__ import annotations

import atexit
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
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpoint.federation.app_shim import address, peer_credentials
from gridpoint.federation.processes import start, stop, tool

__all__ = ["APPS", "CLIENTAPP", "MAX_FORKS", "SERVERAPP", "FlowerApp", "forked_apps", "serve"]


@dataclass(frozen=True)
class FlowerApp:
    """One of the apps Flower's SuperExec starts by name, a process for each message or run."""

    #: As Flower's logs name it, and (lower case, plural) the server's files in a run folder.
    name: str
    #: The console script the SuperExec runs, which the shim stands in for.
    tool: str
    #: Flower's own entry point, "module:function", that each fork calls.
    entry: str
    #: What the server imports before it serves: what the app imports to do its work.
    preload: tuple[str, ...]

    @property
    def files(self) -> str:
        return self.name.lower() + "s"


#: A member's ClientApp, one per message: it trains or evaluates.
CLIENTAPP = FlowerApp(
    "ClientApp",
    "flwr-clientapp",
    "flwr.supernode.cli:flwr_clientapp",
    (
        "torch",
        "transformers.modeling_utils",
        "flwr.supernode.cli.flwr_clientapp",
        "gridpoint.federation.client_app",
    ),
)
#: The host's ServerApp, one per run: it builds the starting model and aggregates the rounds.
SERVERAPP = FlowerApp(
    "ServerApp",
    "flwr-serverapp",
    "flwr.superlink.cli:flwr_serverapp",
    (
        "torch",
        "transformers.modeling_utils",
        "flwr.superlink.cli.flwr_serverapp",
        "gridpoint.federation.server_app",
    ),
)
APPS = {app.tool: app for app in (CLIENTAPP, SERVERAPP)}
#: Apps running at once; a shim asking beyond this runs the installed app itself.
MAX_FORKS = 16
#: The largest request a shim may send (its arguments and environment), and how long it may
#: take to send it.
MAX_REQUEST_BYTES = 1 << 20
REQUEST_TIMEOUT_S = 2.0
#: Seconds the forks have to end after the server is told to stop (a member's were sent a
#: SIGTERM by their shims, which the SuperNode's stop reached first; a host's ServerApp ends
#: by itself once the SuperLink's SuperExec is gone, as Flower's own does) before they are
#: sent one, and again before they are killed.
STOP_GRACE_S = 5.0
_SHIM = Path(__file__).with_name("app_shim.py")
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


@contextlib.contextmanager
def forked_apps(
    app: FlowerApp,
    env: dict[str, str],
    folder: Path,
    server: Sequence[str] = (),
    *,
    cold: bool = False,
) -> Iterator[dict[str, str]]:
    """Starts a fork server for app with env; yields env for the SuperNode or SuperLink,
    whose SuperExec's app processes it forks.

    The shim and the server's log are written in folder (the run folder). Asked cold, or
    where it cannot serve (not Linux, or the server would not start), yields env unchanged:
    Flower starts its own processes. The server is stopped when the block ends, and stops
    itself should the caller be killed. server: the command that serves, given the listening
    socket's descriptor and the caller's pid as its last two arguments (this module's by
    default).
    """
    serves = sys.platform == "linux" and not cold
    started = _start(app, env, folder, server) if serves else None
    if started is None:
        yield env
        return
    process, bin_dir = started
    try:
        yield {**env, "PATH": str(bin_dir) + os.pathsep + env.get("PATH", "")}
    finally:
        # The server's own stop: its forks' grace, their SIGTERM's and their SIGKILL's.
        stop(process, grace=3 * STOP_GRACE_S)


def _start(
    app: FlowerApp, env: dict[str, str], folder: Path, server: Sequence[str]
) -> tuple[subprocess.Popen[bytes], Path] | None:
    # An abstract socket (Linux): nothing on disk to outlive a killed command, and no limit
    # from the length of a run folder's path. Any local process could connect to the name,
    # or bind it once the server is gone: the server forks only for callers of this user,
    # and the shim talks only to the server's pid.
    name = f"@gridpoint-{app.files}-{secrets.token_hex(16)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bound here, listened on by the server: a peer's credentials are those of the
        # process that listens, and the shim checks them against the server's pid.
        listener.bind(address(name))
        command = list(server) or [sys.executable, "-m", __name__, app.tool]
        bin_dir = folder / f"{app.files}-bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        # Started in bin_dir: `-m` puts the working folder first on sys.path, and a module
        # of the user's folder must not shadow one the app imports.
        process = start(
            [*command, str(listener.fileno()), str(os.getpid())],
            env,
            folder / f"{app.files}.log",
            pass_fds=(listener.fileno(),),
            cwd=bin_dir,
        )
        shim = bin_dir / app.tool
        argv = [sys.executable, "-I", str(_SHIM), name, str(process.pid), tool(app.tool)]
        shim.write_text("#!/bin/sh\nexec " + shlex.join(argv) + ' "$@"\n')
        shim.chmod(0o700)
    except OSError as exc:
        print(f"{app.name}s start cold: no fork server ({exc.strerror or exc})", file=sys.stderr)
        return None
    finally:
        listener.close()
    # Listening comes first in the server, before its imports: once it does, a shim's
    # request waits for them rather than running cold.
    if not _listening(name, process):
        stop(process)
        print(f"{app.name}s start cold: the fork server did not start", file=sys.stderr)
        return None
    return process, bin_dir


@dataclass
class _Fork:
    pid: int
    conn: socket.socket
    #: Its shim is gone: the fork was asked to stop, only its exit is awaited.
    hung_up: bool = False


@dataclass
class _Server:
    """The serving loop's state: its sockets and the forks it waits for, by pid."""

    listener: socket.socket
    selector: selectors.DefaultSelector
    wakeup: tuple[socket.socket, socket.socket]
    app: FlowerApp
    run: Callable[[], None]
    forks: dict[int, _Fork] = field(default_factory=dict)
    stopping: bool = False


def _listening(name: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(address(name))
                return True
            except OSError:
                time.sleep(0.02)
    return False


def flower_entry(app: FlowerApp) -> Callable[[], None]:
    """Flower's own entry point of app (it reads sys.argv)."""
    module, function = app.entry.split(":")
    entry: Callable[[], None] = getattr(importlib.import_module(module), function)
    return entry


def serve(
    listener: socket.socket,
    parent: int,
    app: FlowerApp,
    run: Callable[[], None] | None = None,
    preload: Sequence[str] | None = None,
) -> None:
    """Imports preload (app's by default), then forks for every request on the listening
    socket a child that calls run (app's entry point by default) with the request's argv,
    environment, folder and streams, until SIGTERM or until parent, the process that
    started it, is gone."""
    listener.listen(MAX_FORKS)
    for module in app.preload if preload is None else preload:
        importlib.import_module(module)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise SystemExit(f"an import initialized CUDA: no {app.name} can be forked from here")
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    server = _Server(
        listener,
        selectors.DefaultSelector(),
        (wake_r, wake_w),
        app,
        flower_entry(app) if run is None else run,
    )
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
        _stop_forks(server)


def _accept(server: _Server) -> None:
    try:
        conn, _ = server.listener.accept()
    except OSError:  # out of descriptors, or the caller gave up: the next one may do
        time.sleep(0.1)
        return
    try:
        if peer_credentials(conn)[1] != os.getuid():
            raise ConnectionError("another user")
        if len(server.forks) >= MAX_FORKS:
            conn.sendall(b"busy\n")
            raise ConnectionError("busy")
        request, fds = _receive(conn)
    except Exception:
        conn.close()
        return
    try:
        _fork(server, conn, request, fds)
    except Exception:
        # Could not fork (no memory, too many processes): this caller runs Flower's own.
        traceback.print_exc()
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The shim's request and its three standard streams (an error when malformed, too
    large or too slow)."""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    conn.settimeout(REQUEST_TIMEOUT_S)
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    try:
        if len(fds) != 3 or len(data) < 4:
            raise ValueError("a request is a length, a body and three streams")
        (size,) = struct.unpack("!I", data[:4])
        if size > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        body = bytearray(data[4:])
        while len(body) < size:
            conn.settimeout(max(0.001, deadline - time.monotonic()))
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


def _fork(server: _Server, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    # Written out before the fork, so the child does not write them a second time.
    sys.stdout.flush()
    sys.stderr.flush()
    # No signal may run the server's handlers in the child before it has its own.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            _become_app(server, conn, request, fds)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    # Its pid only: Flower's arguments hold the message's token.
    print(f"forked a {server.app.name}: pid {pid}", flush=True)
    server.forks[pid] = _Fork(pid, conn)
    server.selector.register(conn, selectors.EVENT_READ, pid)
    # A pidfd lets the shim signal this very process, never a later one with its pid.
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        socket.send_fds(conn, [f"pid {pid}\n".encode()], [] if pidfd is None else [pidfd])
    except OSError:
        _hung_up(server, pid)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _become_app(
    server: _Server, conn: socket.socket, request: dict[str, Any], fds: list[int]
) -> None:
    """In the child: becomes the shim's app, then exits as a process does (never
    returning to the serving loop)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        # A group of its own: the server's stop reaches it once, through its shim or the
        # server, never a second time mid-cleanup through the server's group.
        os.setpgid(0, 0)
        server.selector.close()
        for sock in (server.listener, *server.wakeup, conn):
            sock.close()
        for fork in server.forks.values():
            fork.conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        # As the console script would have them.
        installed = tool(server.app.tool)
        sys.argv = [installed, *request["argv"][1:]]
        sys.path[0] = str(Path(installed).parent)
        _fresh_seeds()
        server.run()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
    finally:
        _exit(code)


def _fresh_seeds() -> None:
    """Every fork would draw the server's random numbers: each gets seeds of its own, as a
    new process would (Python's `random` reseeds itself after a fork)."""
    if (numpy_random := sys.modules.get("numpy.random")) is not None:
        numpy_random.seed()
    if (torch := sys.modules.get("torch")) is not None:
        torch.seed()


def _exit(code: int) -> None:
    """Shuts the interpreter down as a process's end does (threads joined, atexit run,
    streams flushed), then exits with code (a negative code: killed by that signal)."""
    with contextlib.suppress(BaseException):
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 1)


def _hung_up(server: _Server, pid: int) -> None:
    """The shim closed its end (it was killed): its app is stopped as it would have been."""
    fork = server.forks[pid]
    if fork.hung_up:
        return
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


def _stop_forks(server: _Server) -> None:
    """The forks still running: a grace to end (their shims were signalled first), then a
    SIGTERM, then a SIGKILL."""
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            for pid in server.forks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        deadline = time.monotonic() + STOP_GRACE_S
        while server.forks and time.monotonic() < deadline:
            _reap(server)
            time.sleep(0.05)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[2])), int(sys.argv[3]), APPS[sys.argv[1]])
