"""Federated rounds on a real Flower deployment: SuperLink, SuperNodes, ServerApp, ClientApp.

A host and two members (each a gridpoint node with its own home), all on 127.0.0.1 with
ephemeral ports; every process started is stopped at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpoint.federation.processes import free_port
from gridpoint.node.home import NodeHome
from tests.helpers import ROOT, Daemon, cli_json, trust

pytestmark = pytest.mark.slow
STUDY = ROOT / "examples" / "tiny-study.toml"


@dataclass
class Federation:
    host: NodeHome
    members: list[NodeHome]
    daemons: dict[str, Daemon]
    address: str
    workdir: Path
    processes: list[subprocess.Popen[str]]

    def start_host(self, name: str, round_timeout: int = 150) -> subprocess.Popen[str]:
        # Two members training at once on 2 cores, plus Flower's polling: a round takes
        # 20-40 s here, so the timeout is generous except where a test waits on it.
        argv = [
            sys.executable,
            "-m",
            "gridpoint",
            "--home",
            str(self.host.path),
            "fed",
            "host",
            "--federation",
            name,
            "--study",
            str(STUDY),
            "--rounds",
            "2",
            "--min-members",
            "2",
            "--listen",
            self.address,
            "--round-timeout",
            str(round_timeout),
            "--json",
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        self.processes.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "SuperLink on" in line, line + proc.stderr.read()
        return proc

    def join(
        self, member: NodeHome, name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            "-m",
            "gridpoint",
            "--home",
            str(member.path),
            "fed",
            "join",
            self.address,
            "--federation",
            name,
            "--pipeline",
            "tiny_pipeline:load",
            "--pipeline-dir",
            str(self.workdir),
            "--max-wait",
            "10",
            "--json",
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.processes.append(proc)
        return proc


#: A sitecustomize that makes a member sign the wrong digest (see its docstring).
TAMPER = Path(__file__).parent / "tamper"


def kill_flower_processes_under(folder: Path) -> int:
    """SIGKILLs every process whose FLWR_HOME lies under folder; returns how many.

    Flower's SuperNode starts its SuperExec and ClientApps detached; after a SIGKILL of the
    SuperNode they live on as orphans, so they are found by the environment they inherited.
    """
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        homes = [e.removeprefix(b"FLWR_HOME=") for e in environ if e.startswith(b"FLWR_HOME=")]
        if homes and homes[0].decode(errors="replace").startswith(str(folder)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture
def federation(make_home, daemons, tmp_path: Path) -> Iterator[Federation]:
    host, m1, m2 = make_home("H"), make_home("M1"), make_home("M2")
    running = {h.path.name: Daemon.start(h) for h in (host, m1, m2)}
    daemons += running.values()
    for member in (m1, m2):
        trust(host, member, running[member.path.name].address)
        trust(member, host, running["H"].address)
    shutil.copy(ROOT / "examples" / "tiny_pipeline.py", tmp_path / "tiny_pipeline.py")
    fed = Federation(host, [m1, m2], running, f"127.0.0.1:{free_port()}", tmp_path, [])
    yield fed
    for proc in fed.processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    kill_flower_processes_under(tmp_path)


def test_two_members_train_two_rounds_and_the_record_reaches_a_third_node(
    federation: Federation, make_home, daemons
) -> None:
    # Execute
    host = federation.start_host("alpha")
    joins = [federation.join(m, "alpha") for m in federation.members]
    code, out, err = finish(host)
    member_results = [finish(j) for j in joins]
    # Assert: both members aggregated in both rounds, the model moved, the record is public.
    assert code == 0, err
    summary = json.loads(out)
    assert [len(r["accepted"]) for r in summary["rounds"]] == [2, 2]
    assert summary["model_changed"] is True
    ids = sorted(m.identity.node_id for m in federation.members)
    assert summary["members"] == ids
    for mcode, mout, merr in member_results:
        assert mcode == 0, merr
        assert [r["round"] for r in json.loads(mout)["rounds"]] == [1, 2]
    third = make_home("C")
    trust(third, federation.host, federation.daemons["H"].address)
    dc = Daemon.start(third)
    daemons.append(dc)
    trust(federation.host, third, dc.address)
    cli_json("catalog", "sync", home=third.path)
    [record] = cli_json("catalog", "query", "kind = 'federated'", home=third.path)
    assert record["signer"] == federation.host.identity.node_id
    assert record["members"] == ids
    assert {p["step"] for p in record["curve"]} == {1, 2}
    assert record["id"] == summary["record_id"]


def test_a_tampered_update_is_left_out_and_the_rounds_complete(federation: Federation) -> None:
    honest, tamperer = federation.members
    host = federation.start_host("beta")
    joins = [
        federation.join(honest, "beta"),
        federation.join(tamperer, "beta", env={"PYTHONPATH": str(TAMPER)}),
    ]
    code, out, err = finish(host)
    for j in joins:
        finish(j)
    assert code == 0, err
    summary = json.loads(out)
    assert [r["accepted"] for r in summary["rounds"]] == [[honest.identity.node_id]] * 2
    for r in summary["rounds"]:
        assert [x["node"] for x in r["refused"]] == [tamperer.identity.node_id]
        assert "signature" in r["refused"][0]["reason"]
    assert summary["members"] == [honest.identity.node_id]
    assert f"left out {tamperer.identity.node_id}" in err


def test_a_member_killed_mid_federation_does_not_stall_it(federation: Federation) -> None:
    survivor, victim = federation.members
    host = federation.start_host("gamma", round_timeout=60)
    joins = [federation.join(survivor, "gamma"), federation.join(victim, "gamma")]
    status = victim.path / "fed-member" / "gamma" / "status.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (status.exists() and status.read_text().strip()):
        time.sleep(0.2)
    assert status.exists(), "the victim never trained round 1"
    # Killed between training round 1 and delivering its update: mid-round.
    os.killpg(joins[1].pid, signal.SIGKILL)  # the join command
    assert kill_flower_processes_under(victim.path) >= 1  # its SuperNode, SuperExec, ClientApp
    code, out, err = finish(host)
    finish(joins[0])
    assert code == 0, err
    summary = json.loads(out)
    assert [r["accepted"] for r in summary["rounds"]] == [[survivor.identity.node_id]] * 2
    assert summary["members"] == [survivor.identity.node_id]
