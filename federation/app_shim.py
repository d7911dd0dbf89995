"""The `flwr-clientapp` (or `flwr-serverapp`) that a SuperExec finds first on PATH: it asks the
fork server for that app and waits for it, as if it were that process (app_forks.py).

Run by path with `python -I` for every message a member receives (every run a host submits),
so it imports the standard library only, never gridpoint, Flower or torch. Its arguments: the
fork server's socket, the server's pid, the installed app, then Flower's own arguments. It
hands the server those arguments, its environment, working folder and standard streams (only
once the socket's other end proves to be that server, of this user); forwards the signals it
receives to the forked app; and exits with the app's status. When the server cannot be
reached (gone, busy, or not answering in time) it runs the installed app in its own place, so
a message or a run is never lost to the shortcut. It must never run the app itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from types import FrameType

#: The signals a SuperExec or a terminal may send an app: passed on to the fork.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
#: Seconds to wait for a fork: the server may still be importing when the first message comes.
ANSWER_TIMEOUT_S = 60.0


class Refused(ConnectionError):
    """The server did not fork (or is not the server): the installed app runs instead."""


def address(name: str) -> str:
    """The socket address of a name: "@name" is a Linux abstract socket, whose real name
    starts with a NUL byte (which no command line can carry)."""
    return "\0" + name[1:] if name.startswith("@") else name


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a connected Unix socket (for a
    listening one: the process that listens)."""
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid


def connect(name: str, server_pid: int) -> socket.socket:
    """A connection to the fork server, checked to be that process of this user."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(ANSWER_TIMEOUT_S)
        sock.connect(address(name))
        # Any local user may bind a free name, so the listener's credentials are checked
        # before anything (environment, token, streams) is handed to it.
        pid, uid = peer_credentials(sock)
        if uid != os.getuid() or pid != server_pid:
            raise Refused("the socket is not the fork server's")
    except BaseException:
        sock.close()
        raise
    return sock


def request(sock: socket.socket, argv: list[str]) -> tuple[int, int | None]:
    """Asks for a fork running argv; returns its pid and a pidfd for it where the server
    could open one (Refused when it did not fork)."""
    body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(sock, [struct.pack("!I", len(body)) + body], [0, 1, 2])
    data, fds, _, _ = socket.recv_fds(sock, 256, 1)
    line = (data + (b"" if data.endswith(b"\n") or not data else _line(sock))).decode()
    if not line.startswith("pid "):
        for fd in fds:
            os.close(fd)
        raise Refused(f"the fork server did not fork: {line.strip() or 'no answer'}")
    return int(line.removeprefix("pid ").strip()), (fds[0] if fds else None)


def wait(sock: socket.socket, pid: int, pidfd: int | None) -> int:
    """The fork's exit status once it ends (os.waitstatus_to_exitcode's sign convention)."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        # Through the pidfd where there is one: the pid may already be reaped and reused.
        with contextlib.suppress(OSError):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    # A signal that came while the fork was being asked for is delivered (forwarded) now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    sock.settimeout(None)
    line = _line(sock).decode(errors="replace")
    # The server went away without an answer.
    return int(line.removeprefix("exit ")) if line.startswith("exit ") else 1


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < 256:
        try:
            chunk = sock.recv(64)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _die_like(code: int) -> None:
    """Exits as the fork did: with its code, or killed by the same signal."""
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's action cannot be set
            signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [-code])
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


def main() -> None:
    name, server_pid, installed, *argv = sys.argv[1:]
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        sock = connect(name, int(server_pid))
        try:
            pid, pidfd = request(sock, [os.path.basename(installed), *argv])
        except BaseException:
            sock.close()
            raise
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        os.execv(installed, [installed, *argv])
    _die_like(wait(sock, pid, pidfd))


if __name__ == "__main__":
    main()
