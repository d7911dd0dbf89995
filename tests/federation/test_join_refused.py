"""A member the host does not trust is told so, with the command the host must run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gridpoint.federation.processes import free_port, kill_flower_processes_under
from tests.federation.test_rounds import STUDY
from tests.helpers import ROOT, Daemon, MakeHome, trust

# In the Flower tests' xdist group: never beside another deployment on 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("federation")]


def test_a_member_the_host_does_not_trust_is_told_what_the_host_must_run(
    make_home: MakeHome, daemons: list[Daemon], tmp_path: Path
) -> None:
    # Prepare: H trusts P only; M trusts H, but H does not trust M.
    host, peer, member = make_home("H"), make_home("P"), make_home("M")
    running = {h.path.name: Daemon.start(h) for h in (host, peer)}
    daemons += running.values()
    trust(host, peer, running["P"].address)
    trust(member, host, running["H"].address)
    shutil.copy(ROOT / "examples" / "tiny_pipeline.py", tmp_path / "tiny_pipeline.py")
    address = f"127.0.0.1:{free_port()}"
    fed_host = subprocess.Popen(
        [sys.executable, "-m", "gridpoint", "--home", str(host.path), "fed", "host",
         "--federation", "f", "--study", str(STUDY), "--rounds", "1", "--min-members", "1",
         "--listen", address, "--round-timeout", "30"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert fed_host.stderr is not None
        assert "SuperLink on" in fed_host.stderr.readline()
        # Execute
        join = subprocess.run(
            [sys.executable, "-m", "gridpoint", "--home", str(member.path), "fed", "join",
             address, "--federation", "f", "--pipeline", "tiny_pipeline:load",
             "--pipeline-dir", str(tmp_path), "--max-wait", "6"],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
    finally:
        os.killpg(fed_host.pid, signal.SIGTERM)
        try:
            fed_host.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(fed_host.pid, signal.SIGKILL)
            fed_host.wait()
        kill_flower_processes_under(tmp_path)
    # Assert
    assert join.returncode == 1, join.stdout + join.stderr
    assert "refused this node's SuperNode key: it does not trust this node yet" in join.stderr
    assert f"peer add <this node's address> --fingerprint {member.tls_fingerprint}" in join.stderr
