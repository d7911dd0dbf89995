"""The node image's entry point and health check, run here without a docker engine.

The entry point must refuse a node home its user cannot write, in one line and with a non-zero
exit, before the command runs; tests run as root here, so it runs as an unprivileged user
through setpriv, as it does in the image (uid 10001). The health check asks a real daemon the
standard gRPC health question over the node's own mutual TLS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridpoint.node.home import NodeHome
from tests.helpers import ROOT, Daemon

ENTRYPOINT = ROOT / "docker" / "entrypoint"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
NOBODY = 65534


def run_unprivileged(
    home: Path, *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The entry point as a user who owns nothing here (root reads and writes everything).

    It runs from a copy in a folder that user can read: the checkout may sit in one it
    cannot (a clone in `mktemp -d` is root's alone), as the script never does in the image.
    """
    as_user: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run the entry point as another user"
        as_user = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="gridpoint-entrypoint-script-"))
    try:
        folder.chmod(0o755)
        script = folder / ENTRYPOINT.name
        shutil.copy2(ENTRYPOINT, script)
        script.chmod(0o755)
        return subprocess.run(
            [*as_user, str(script), *command],
            env={"PATH": os.environ["PATH"], "GRIDPOINT_HOME": str(home), **(env or {})},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder the unprivileged user can reach (pytest's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gridpoint-entrypoint-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def owned_by_runner(path: Path) -> Path:
    path.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def test_refuses_a_home_it_cannot_write_in_one_line(open_tmp: Path) -> None:
    home = open_tmp / "home"
    home.mkdir(mode=0o755)  # root's: readable, not writable, by the container's user
    marker = owned_by_runner(open_tmp / "out") / "ran"
    done = run_unprivileged(home, "touch", str(marker))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: the node home {home} is not writable by user ")
    assert not marker.exists()  # the command never ran
    assert list(home.iterdir()) == []  # and nothing was left behind


def test_refuses_a_missing_home_it_cannot_create(open_tmp: Path) -> None:
    done = run_unprivileged(open_tmp / "absent", "true")
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "does not exist and cannot be created" in done.stderr


def test_runs_the_command_on_a_writable_home(open_tmp: Path) -> None:
    home = owned_by_runner(open_tmp / "home")
    done = run_unprivileged(home, "sh", "-c", 'echo "ran in $GRIDPOINT_HOME"')
    assert (done.returncode, done.stdout, done.stderr) == (0, f"ran in {home}\n", "")
    assert list(home.iterdir()) == []  # the write probe cleans up after itself


def test_database_password_reaches_libpq_through_a_private_password_file(open_tmp: Path) -> None:
    home = owned_by_runner(open_tmp / "home")
    private = owned_by_runner(open_tmp / "private")
    secret = open_tmp / "db-password"
    secret.write_text("s3cret:can\\ary\n")
    secret.chmod(0o644)
    passfile = private / "pgpass"
    env = {"GRIDPOINT_DB_PASSWORD_FILE": str(secret), "PGPASSFILE": str(passfile)}
    done = run_unprivileged(home, "sh", "-c", 'test -z "${PGPASSWORD:-}" && echo ok', env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")
    # libpq's format: any host, port, database and user; ':' and '\' escaped.
    assert passfile.read_text() == "*:*:*:*:s3cret\\:can\\\\ary\n"
    assert passfile.stat().st_mode & 0o777 == 0o600
    assert list(home.iterdir()) == []  # never on the home volume
    secret.chmod(0o600)  # root's alone now
    done = run_unprivileged(home, "true", env=env)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "cannot be read" in done.stderr and "s3cret" not in done.stderr


def test_healthcheck_follows_the_daemon(
    make_home: Callable[[str], NodeHome], daemons: list[Daemon]
) -> None:
    home = make_home("Alpha")

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HEALTHCHECK)],
            env={**os.environ, "GRIDPOINT_HOME": str(home.path)},
            capture_output=True,
            text=True,
            timeout=30,
        )

    before = health()
    assert before.returncode == 1 and "no daemon has announced" in before.stderr
    daemon = Daemon.start(home)
    daemons.append(daemon)
    up = health()
    assert (up.returncode, up.stdout) == (0, "SERVING\n"), up.stderr
    daemon.stop()
    down = health()
    assert down.returncode == 1
    assert down.stderr.startswith(f"unhealthy: the daemon at {daemon.address} did not answer")
