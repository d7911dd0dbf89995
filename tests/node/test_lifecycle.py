"""A daemon's life cycle: `node stop` (signal, bounded wait, escalation) and repeated signals.

The daemons are real processes (that is what is being stopped); `node stop` and `node
status` run in this process.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridpoint.node.home import NodeHome
from tests.cli_main import run_main
from tests.helpers import ROOT, Daemon, MakeHome

pytestmark = pytest.mark.slow


def _running(capsys: pytest.CaptureFixture[str], home: NodeHome) -> bool:
    return bool(run_main(capsys, "node", "status", "--json", home=home.path).json()["running"])


def test_node_stop_stops_the_daemon_and_a_second_stop_finds_none(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare
    home: NodeHome = make_home("A")
    daemon = Daemon.start(home)
    daemons.append(daemon)
    status = run_main(capsys, "node", "status", "--json", home=home.path).json()
    assert status["running"] and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["started_at"]
    )
    # Execute
    first = run_main(capsys, "node", "stop", "--json", home=home.path)
    second = run_main(capsys, "node", "stop", home=home.path)
    # Assert: drained and closed by SIGTERM, not killed.
    stopped = first.json()
    assert stopped["pid"] == daemon.process.pid and stopped["killed"] is False
    assert daemon.process.wait(timeout=10) == 0
    assert "node stopped" in daemon.log()
    assert second.returncode == 0 and second.stdout.startswith("no daemon runs on")
    assert not _running(capsys, home)


def test_signals_repeated_at_any_moment_of_shutdown_never_hang_the_daemon(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: a daemon once hung for good when a second SIGTERM landed while its main thread
    # held a lock the signal handler then waited for.
    home: NodeHome = make_home("A")
    rng = random.Random(24)
    for _ in range(2):
        daemon = Daemon.start(home)
        daemons.append(daemon)
        # Execute: SIGTERM, then a burst of SIGTERM and SIGINT through the shutdown.
        daemon.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + rng.uniform(0.0, 0.02)
        while time.monotonic() < deadline:
            pass
        for i in range(300):
            if daemon.process.poll() is not None:
                break
            daemon.process.send_signal(signal.SIGINT if i % 2 else signal.SIGTERM)
        # Assert: it finishes its shutdown (every bound holds) and releases the home.
        assert daemon.process.wait(timeout=20) == 0
        assert not _running(capsys, home)


HOLDER = """
import signal, sys, time
from pathlib import Path
from gridpoint.node.home_lock import hold_home

signal.signal(signal.SIGTERM, signal.SIG_IGN)
with hold_home(Path(sys.argv[1])) as held:
    held.announce("127.0.0.1:1")
    print("holding", flush=True)
    time.sleep(120)
"""


def test_node_stop_kills_a_daemon_that_does_not_stop_in_time(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: a process holding the home that ignores SIGTERM (a daemon stuck for good).
    home: NodeHome = make_home("A")
    stuck = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(home.path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert stuck.stdout is not None and stuck.stdout.readline() == "holding\n"
        # Execute
        started = time.monotonic()
        ran = run_main(capsys, "node", "stop", "--timeout", "1", home=home.path)
        took = time.monotonic() - started
        # Assert
        assert ran.returncode == 0 and "killed it (SIGKILL)" in ran.stdout
        assert stuck.wait(timeout=10) == -signal.SIGKILL and took < 8
        assert not _running(capsys, home)
    finally:
        if stuck.poll() is None:
            stuck.kill()
            stuck.wait()
        if stuck.stdout is not None:
            stuck.stdout.close()
