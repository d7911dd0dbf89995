"""Shared fixtures: node homes, stores on SQLite and PostgreSQL, real daemons on loopback.

PostgreSQL tests each get an empty database of their own on 127.0.0.1:5432 (made by this
file, emptied after each test for the next, dropped when the run ends). Outside CI they
skip when no server answers; with CI=true they fail instead, so CI never skips them.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import SqlStore, open_store
from tests.helpers import Daemon, MakeHome, set_sync
from tests.inprocess import Network

if TYPE_CHECKING:
    import psycopg

PG_ADMIN_URL = os.environ.get("GRIDPOINT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    import psycopg

    return psycopg.connect(
        PG_ADMIN_URL.replace("postgresql://", "postgresql://", 1), autocommit=True
    )


class _Databases:
    """This test process's PostgreSQL databases: each test gets one of its own, emptied after
    it and handed to the next. Creating a database took 0.28 s here (the server copies and
    syncs a template), emptying one 0.02 s; about 160 tests use one."""

    def __init__(self) -> None:
        self.free: list[str] = []
        self.made: list[str] = []

    def take(self, admin: psycopg.Connection[tuple[object, ...]]) -> str:
        if self.free:
            return self.free.pop()
        name = f"gridpoint_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return name

    def give_back(self, name: str) -> None:
        """Empties `name` as CREATE DATABASE would leave it, or drops it if that fails."""
        import psycopg

        with _pg_admin() as admin:
            try:
                # A test may have left connections open or the database read-only.
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                admin.execute(f'ALTER DATABASE "{name}" RESET ALL')
                with psycopg.connect(_url(name), autocommit=True) as db:
                    schemas = [
                        str(row[0])
                        for row in db.execute(
                            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
                            " AND nspname <> 'information_schema'"
                        )
                    ]
                    for schema in schemas:
                        db.execute(f'DROP SCHEMA "{schema}" CASCADE')
                    db.execute("CREATE SCHEMA public")
            except psycopg.Error:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                self.made.remove(name)
                return
        self.free.append(name)

    def drop_all(self) -> None:
        if not self.made:
            return
        with _pg_admin() as admin:
            for name in self.made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url(name: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[_Databases]:
    databases = _Databases()
    yield databases
    databases.drop_all()


@pytest.fixture
def pg_url(pg_databases: _Databases) -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (emptied again after it)."""
    try:
        admin = _pg_admin()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with admin:
        name = pg_databases.take(admin)
    try:
        yield _url(name)
    finally:
        pg_databases.give_back(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def make_home(tmp_path: Path) -> MakeHome:
    """Creates initialized node homes: make_home("OrgA") -> NodeHome. Their daemons run no
    periodic sync (interval_s = 0): a test syncs when it means to, so a round of the
    daemon's own never lands in the middle of one (tests.helpers.set_sync turns it on)."""

    def make(name: str) -> NodeHome:
        home = NodeHome(tmp_path / name)
        home.init(name)
        return set_sync(home, interval_s=0.0)

    return make


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    """In-process nodes (tests.inprocess): real services and stores, no sockets."""
    network = Network(tmp_path / "net")
    yield network
    network.close()


@pytest.fixture
def silent() -> Iterator[threading.Event]:
    """Set at teardown: a crafted peer that waits on it (goes silent) stops waiting."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Started daemons appended here are stopped (and killed if need be) at teardown."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def pytest_configure(config: pytest.Config) -> None:
    """One thread per torch (and BLAS) in the test processes and every child they start, set
    before collection imports torch: the suite runs more workers than cores, and each process's
    thread pool would spin waiting for cores the others hold (the same test took twice the
    CPU time with two threads)."""
    for threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(threads, "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test that needs PostgreSQL `postgres` (`-m "not postgres"` leaves them out
    where no server runs); then slow tests first, the two real Flower federations (minutes
    each) before all: long tests started last stretch the run. Under `./dev test`'s `--dist
    loadgroup` each worker is handed one test at a time, so the two stories start on two
    workers of their own; plain `-n 2` (`--dist load`) hands the first worker a run of tests,
    both stories."""
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()) or "postgresql" in item.name:
            item.add_marker(pytest.mark.postgres)
    items.sort(
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            item.path.name != "test_rounds.py",
        )
    )
