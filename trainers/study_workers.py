"""Who works on a study right now: every run and worker holds the study's worker lock, shared.

A run that takes the lock alone (exclusive) knows that no other process is running trials of
the study, so every trial still RUNNING was left by one that is gone (killed, a second
Ctrl-C): `when_alone` fails them at once, while the lock is still exclusive, so no worker
starting at that moment can have a trial among them. Then the lock is shared for the rest of
the run. When others hold it, their RUNNING trials may be live: only a silent heartbeat
(study_storage.py) tells a dead one there.

Where the lock is: for a SQLite storage, an flock on a file beside the database (a SQLite
study lives on one machine, like its file; the kernel drops the lock with the process,
however it ends); for PostgreSQL, a session-level advisory lock (the server drops it when the
holder's connection ends). Any other storage: never alone, heartbeats decide.

Must never: report "alone" while another live process holds the lock, or block for long (the
exclusive attempt never waits; the shared one waits only for another run's own check).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["study_workers"]

#: The first key of gridpoint's PostgreSQL advisory locks ("grid"); the second is the study's.
_PG_NAMESPACE = 0x67726964


def _study_key(name: str) -> int:
    """A study name as a signed 32-bit integer (PostgreSQL's advisory lock key half)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


@contextlib.contextmanager
def _file_lock(database: Path, name: str, when_alone: Callable[[], None]) -> Iterator[bool]:
    folder = database.with_name(f"{database.name}.workers")
    folder.mkdir(exist_ok=True)
    path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        if alone:
            when_alone()
        # Converting is not atomic: a run starting in between may find itself alone, but
        # then this one has no trial yet for it to fail.
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield alone
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(url: str, name: str, when_alone: Callable[[], None]) -> Iterator[bool]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    keys = {"a": _PG_NAMESPACE, "b": _study_key(name)}
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            alone = bool(db.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), keys).scalar())
            if alone:
                when_alone()
            # A session never conflicts with itself: shared is granted, then exclusive goes.
            db.execute(text("SELECT pg_advisory_lock_shared(:a, :b)"), keys)
            if alone:
                db.execute(text("SELECT pg_advisory_unlock(:a, :b)"), keys)
            try:
                yield alone
            finally:
                db.execute(text("SELECT pg_advisory_unlock_shared(:a, :b)"), keys)
    finally:
        engine.dispose()


@contextlib.contextmanager
def study_workers(
    storage_url: str, study_name: str, when_alone: Callable[[], None]
) -> Iterator[bool]:
    """Holds this process's share of the study's worker lock for the block; yields whether
    it was alone, after calling when_alone (still alone) if it was."""
    if storage_url.startswith("sqlite:///"):
        database = Path(storage_url.removeprefix("sqlite:///").split("?", 1)[0])
        with _file_lock(database, study_name, when_alone) as alone:
            yield alone
    elif storage_url.startswith(("postgresql", "postgres")):
        with _advisory_lock(storage_url, study_name, when_alone) as alone:
            yield alone
    else:
        yield False
