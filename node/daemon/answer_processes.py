"""Child processes that answer peers' catalog calls (Catalog.Query, .Sync, .Fetch) for the
daemon, so that their work runs beside the daemon's GIL rather than under it.

Why: an answer is Python and SQLite, and SQLite lets go of the GIL at every statement step.
In the daemon, gRPC's threads take the GIL at each of those steps, and every hand-over costs
both threads CPU: an answer costs the daemon about twice the CPU it costs alone in a process
(bench/RESULTS.md, "Live answers from a process of their own"). A child answers one call at
a time, alone on its own GIL; the daemon's threads only wait on its pipe.

The daemon still authenticates every call (its replay guard is the only one) and hands a
child only what it accepted: the method, the request's raw bytes and the caller's node id.
The child answers with a NodeService of its own over the same home and database, under the
config and sharing policy the daemon holds (sent over its socket, not read from the file as
it is when the child starts; the policy then follows the file's edits as the daemon's
does), so the sharing policy, the key chain and the outbound ledger apply as in the daemon:
each process notes what it sends before sending it (each folds its own repeats, so a query
repeated within a minute may take a row per process). It sends back the answer's bytes, or the class
and message of the GridpointError it raised, which the daemon raises again so that the RPC
boundary maps it to the same status as before.

A call never waits for a child that is starting, dead or that cannot be started, nor more
than PATIENCE_S for a busy one: the daemon answers it itself. A child that died is started
again, at most once every RESTART_AFTER_S. A child ends when the daemon closes the pool, or
when the daemon's end of its socket closes (the daemon was killed): none outlives the daemon.
Children inherit the daemon's blocked SIGTERM and SIGINT: a signal to the process group
(Ctrl-C) is the daemon's to act on, and it ends them.

Must never: answer a call the daemon did not authenticate; hand a child the request's
signature, or anything else it would need to authenticate a call on its own; leave a child
running after close().
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from gridpoint.errors import Busy, GridpointError, in_words
from gridpoint.node.control.policy import PolicySource
from gridpoint.node.daemon.answering import PATIENCE_S
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.logs import configure_logging, log_event, log_limited
from gridpoint.node.store.sql_store import open_store

__all__ = ["CLOSE_S", "RESTART_AFTER_S", "AnswerFailed", "AnswerProcesses", "serve_calls"]

#: Seconds between two starts of a child in the same place (one that cannot start, because
#: its database is gone, is not started again in a loop).
RESTART_AFTER_S = 10.0

#: Seconds close() waits for children to leave, in all, before it kills those left.
CLOSE_S = 5.0

_READY = "ready"

#: The environment variable that hands a child the daemon's import path.
_PATH_VARIABLE = "GRIDPOINT_ANSWERING_SYS_PATH"

#: What answers a call in the daemon itself: (method, caller, raw request) -> raw answer.
Answerer = Callable[[str, str, bytes], bytes]


class AnswerFailed(Exception):
    """A child failed on a call with an exception that is not a GridpointError (a bug): its
    class name only, as the RPC boundary logs the daemon's own (never its message)."""


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    conn: Connection
    ready: bool = False


@dataclass
class _Slot:
    """One place for a child: the child now in it (None while it waits to start again)."""

    child: _Child | None = None
    busy: bool = False
    died_at: float = 0.0


class AnswerProcesses:
    """`count` children answering under the daemon's home, config and database;
    thread-safe."""

    def __init__(
        self,
        home: NodeHome,
        db_url: str,
        count: int,
        answer_here: Answerer,
        policy: PolicySource,
    ) -> None:
        self._home = home
        self._db_url = db_url
        self._policy = policy
        self._answer_here = answer_here
        self._free = threading.Condition()
        self._closed = False
        self._slots = [_Slot() for _ in range(count)]
        with self._free:
            for slot in self._slots:
                slot.child = self._start(slot)

    @property
    def count(self) -> int:
        """How many children it keeps (some may be starting, or waiting to start again)."""
        return len(self._slots)

    def answer(self, method: str, caller: str, raw: bytes) -> bytes:
        """The answer to one authenticated call, by a child when one is ready within
        PATIENCE_S, else by the daemon itself. Raises what answering raised, and Busy once
        closed (the daemon is stopping)."""
        taken = self._take()
        if taken is None:
            return self._here(method, caller, raw)
        slot, child = taken
        try:
            child.conn.send((method, caller, raw))
            outcome = child.conn.recv()
        except (EOFError, OSError):
            self._lost(slot, child)
            return self._here(method, caller, raw)
        self._give_back(slot, child)
        return _unpacked(outcome)

    def close(self) -> None:
        """Ends every child, waiting at most about CLOSE_S in all; a call still being
        answered by one is woken and told Busy."""
        with self._free:
            self._closed = True
            children = [(s.child, s.busy) for s in self._slots if s.child is not None]
            for slot in self._slots:
                slot.child = None
            for child, busy in children:
                if busy:
                    # Its socket is being read by the thread answering on it, which closes
                    # it (under this lock, once it sees closed): closed here, the
                    # descriptor's number could be reused under that thread.
                    _wake(child.conn)
                else:
                    child.conn.close()  # the child reads the end of its socket and leaves
            self._free.notify_all()
        deadline = time.monotonic() + CLOSE_S
        for child, _ in children:
            _end(child.process, max(0.0, deadline - time.monotonic()))

    def pids(self) -> list[int]:
        """The children's process ids (those started and not yet ended)."""
        with self._free:
            return [s.child.process.pid for s in self._slots if s.child is not None]

    def _here(self, method: str, caller: str, raw: bytes) -> bytes:
        if self._closed:
            raise Busy("this node is stopping; ask again later")
        return self._answer_here(method, caller, raw)

    def _take(self) -> tuple[_Slot, _Child] | None:
        """A free slot whose child is ready, marked busy, and that child; None when none is
        ready or every ready one stayed busy for PATIENCE_S."""
        deadline = time.monotonic() + PATIENCE_S
        with self._free:
            while not self._closed:
                ready = [s for s in self._slots if self._is_ready(s)]
                free = next((s for s in ready if not s.busy), None)
                if free is not None and free.child is not None:
                    free.busy = True
                    return free, free.child
                left = deadline - time.monotonic()
                if not ready or left <= 0:
                    return None
                self._free.wait(left)
        return None

    def _is_ready(self, slot: _Slot) -> bool:
        """Whether slot's child can take calls (called holding the lock; never blocks): a
        starting child is ready once its first message came, a dead one is started again."""
        child = slot.child
        if child is None:
            if not self._closed and time.monotonic() - slot.died_at >= RESTART_AFTER_S:
                slot.child = self._start(slot)
            return False
        if child.ready:
            return True
        try:
            if child.conn.poll(0):
                child.ready = child.conn.recv() == _READY
                return child.ready
        except (EOFError, OSError):
            pass
        else:
            if child.process.poll() is None:
                return False
        self._retire(slot, child)
        return False

    def _start(self, slot: _Slot) -> _Child | None:
        """A new child for slot; None (and a log line) when none can be started now."""
        # A new interpreter, not a fork: the daemon has gRPC's threads, and a forked child
        # would hold copies of their locks in whatever state they were. It imports from the
        # daemon's own import path, nothing else (-P: not its working directory), so it runs
        # the daemon's code, whatever else is installed or lies in that directory.
        try:
            ours, theirs = socket.socketpair()
        except OSError as exc:  # out of descriptors
            self._cannot_start(slot, exc)
            return None
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-c", _CHILD_MAIN, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={**os.environ, _PATH_VARIABLE: json.dumps(sys.path)},
            )
        except OSError as exc:  # out of processes, memory or descriptors
            ours.close()
            self._cannot_start(slot, exc)
            return None
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        # What it opens, sent over its socket: never on its command line (a database URL may
        # hold a password, and any user can read a command line).
        opens = (str(self._home.path), self._home.config, self._db_url, self._policy.snapshot())
        with contextlib.suppress(OSError):  # it died at once: _is_ready finds it so
            conn.send(opens)
        return _Child(process, conn)

    def _cannot_start(self, slot: _Slot, exc: OSError) -> None:
        slot.died_at = time.monotonic()
        log_event(
            "cannot start an answering process; the daemon answers its calls",
            error=in_words(exc),
            retry_in_s=RESTART_AFTER_S,
        )

    def _give_back(self, slot: _Slot, child: _Child) -> None:
        with self._free:
            slot.busy = False
            if self._closed:
                child.conn.close()
            self._free.notify()

    def _lost(self, slot: _Slot, child: _Child) -> None:
        with self._free:
            slot.busy = False
            if self._closed:
                child.conn.close()
            elif slot.child is child:
                self._retire(slot, child)
            self._free.notify_all()

    def _retire(self, slot: _Slot, child: _Child) -> None:
        child.conn.close()
        _end(child.process, wait_s=0.1)
        slot.child, slot.died_at = None, time.monotonic()
        log_event(
            "answering process ended; the daemon answers its calls until it is started again",
            exitcode=child.process.returncode,
            restart_in_s=RESTART_AFTER_S,
        )


def _wake(conn: Connection) -> None:
    """Ends the socket under conn for both ends (a read on it returns at once), leaving the
    descriptor itself to conn's owner."""
    with contextlib.suppress(OSError):
        twin = socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)
        twin.shutdown(socket.SHUT_RDWR)
        twin.close()


def _end(process: subprocess.Popen[bytes], wait_s: float) -> None:
    """Waits for a child told to leave (its socket closed); kills it past wait_s."""
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _unpacked(outcome: tuple[str, bytes | str, str]) -> bytes:
    kind, body, message = outcome
    if kind == "answer" and isinstance(body, bytes):
        return body
    if kind == "refused" and isinstance(body, str):
        raise _ERRORS.get(body, GridpointError)(message)
    raise AnswerFailed(str(body))


def _error_classes() -> dict[str, type[GridpointError]]:
    found: dict[str, type[GridpointError]] = {}
    todo: list[type[GridpointError]] = [GridpointError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


_ERRORS = _error_classes()


#: What a child runs: serve_calls over the socket whose descriptor is its argument.
_CHILD_MAIN = (
    f"import json, os, sys; sys.path[:] = json.loads(os.environ.pop({_PATH_VARIABLE!r})); "
    "from gridpoint.node.daemon.answer_processes import serve_calls; "
    "serve_calls(int(sys.argv[1]))"
)


def serve_calls(fd: int) -> None:
    """A child's whole life, over the socket fd: read what to open (the daemon's home, config
    and database), open it, say ready, answer calls until the socket closes."""
    configure_logging()
    conn = Connection(fd)
    try:
        home_path, config, db_url, policy = conn.recv()
        store = open_store(db_url)
    except (EOFError, OSError):
        return
    except GridpointError as exc:
        # The daemon answers in the meantime, and tries a child again later. Never the
        # message: it names the database's URL (a home path, maybe a password).
        log_event("answering process could not open the store", reason=exc.reason)
        return
    service = None
    try:
        home = NodeHome.with_config(Path(home_path), config)
        # The daemon's policy in force, changed as the daemon's is (an edit that is wrong
        # kept out in both), never the file as it is now.
        source = PolicySource(home.config_path, home.secret, policy)
        service = NodeService(home, store, policy=source)
        _answer_calls(service, conn)
    except (EOFError, OSError):
        return  # the daemon closed its end (it stopped, or was killed)
    except GridpointError as exc:  # the home's files, changed since the daemon read them
        log_event("answering process could not start", reason=exc.reason)
    finally:
        if service is not None:
            service.close()
        store.close()


def _answer_calls(service: NodeService, conn: Connection) -> None:
    conn.send(_READY)
    while True:
        method, caller, raw = conn.recv()
        try:
            outcome: tuple[str, bytes | str, str] = (
                "answer",
                service.answer(method, caller, raw),
                "",
            )
        except GridpointError as exc:
            outcome = ("refused", type(exc).__name__, str(exc))
        except Exception as exc:
            # Logged here with its class (the daemon only sees that a child failed).
            log_limited(
                f"failed {method} in answering",
                "request failed in an answering process",
                logging.ERROR,
                method=method,
                error=type(exc).__name__,
            )
            outcome = ("failed", type(exc).__name__, "")
        conn.send(outcome)
