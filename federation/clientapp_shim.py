"""The `flwr-clientapp` that a member's SuperExec finds first on PATH: it asks the fork server
for a ClientApp and waits for it, as if it were that process (clientapp_forks.py).

Run by path with `python -I` for every message a member receives, so it imports the standard
library only, never gridpoint, Flower or torch. Its arguments: the fork server's socket, the
installed `flwr-clientapp`, then Flower's own arguments. It hands the server those arguments,
its environment, working folder and standard streams; forwards the signals it receives to the
forked ClientApp; and exits with the ClientApp's status. When the server cannot be reached
(not started yet, gone, or full) it runs the installed `flwr-clientapp` in its own place, so a
message is never lost to the shortcut. It must never run a ClientApp itself.
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

#: The signals a SuperExec or a terminal may send a ClientApp: passed on to the fork.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def request(sock: socket.socket, argv: list[str]) -> int:
    """Asks for a fork running argv; returns its pid (ConnectionError when refused)."""
    body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(sock, [struct.pack("!I", len(body)) + body], [0, 1, 2])
    line = _line(sock)
    if not line.startswith("pid "):
        raise ConnectionError(f"the fork server refused: {line or 'no answer'}")
    return int(line.removeprefix("pid "))


def wait(sock: socket.socket, pid: int) -> int:
    """The fork's exit status once it ends (os.waitstatus_to_exitcode's sign convention)."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    # A signal that came while the fork was being asked for is delivered (forwarded) now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    line = _line(sock)
    # The server went away without an answer: the fork was stopped with it.
    return int(line.removeprefix("exit ")) if line.startswith("exit ") else 1


def _line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(64)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def main() -> None:
    socket_path, installed, *argv = sys.argv[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        # "@name": a Linux abstract socket, whose real name starts with a NUL byte.
        sock.connect("\0" + socket_path[1:] if socket_path.startswith("@") else socket_path)
        pid = request(sock, ["flwr-clientapp", *argv])
    except OSError:
        sock.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        os.execv(installed, [installed, *argv])
    code = wait(sock, pid)
    if code < 0:
        # Killed by a signal: so is this process, for whoever waits on it.
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
