"""Federated rounds on a real Flower deployment: SuperLink, SuperNodes, ServerApp, ClientApp.

A host and three members (each a gridpoint node with its own home), all on 127.0.0.1 with
ephemeral ports; every process started is stopped at teardown. tests/conftest.py sorts both tests
first, so under `./dev test` (two xdist workers, `--dist loadgroup`) they start at once, one on
each: the whole run was faster than with both on one worker in turn (bench/RESULTS.md). Each
real deployment costs minutes here, so one test tells several stories of one federation.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpoint.federation.processes import free_port, kill_flower_processes_under
from gridpoint.node.home import NodeHome
from tests.cli_main import run_main
from tests.helpers import ROOT, Daemon, MakeHome, trust

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

    def start_host(
        self,
        name: str,
        round_timeout: int = 150,
        min_members: int = 2,
        rounds: int = 2,
        resume: bool = False,
        epochs: int = 1,
        extra: tuple[str, ...] = (),
        study: Path = STUDY,
    ) -> subprocess.Popen[str]:
        # Members training at once on 2 cores, plus Flower's polling: a round takes 20-40 s
        # here, so the timeout is generous except where a test waits on it.
        argv = [
            sys.executable,
            "-m",
            "gridpoint",
            "--home",
            str(self.host.path),
            "fed",
            "host",
            *(
                ["--resume", name]
                if resume
                else [
                    "--federation",
                    name,
                    "--study",
                    str(study),
                    "--rounds",
                    str(rounds),
                    "--min-members",
                    str(min_members),
                    "--listen",
                    self.address,
                    "--round-timeout",
                    str(round_timeout),
                    # The tiny model leaves chance after about two epochs at this rate.
                    "--param",
                    "learning_rate=0.003",
                    "--param",
                    f"epochs={epochs}",
                ]
            ),
            *extra,
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
        while resume and line.startswith("resuming"):
            line = proc.stderr.readline()
        assert "SuperLink on" in line, line + proc.stderr.read()
        return proc

    def join(
        self,
        member: NodeHome,
        name: str,
        env: dict[str, str] | None = None,
        max_wait: int = 10,
        extra: tuple[str, ...] = (),
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
            str(max_wait),
            "--json",
            *extra,
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
#: A sitecustomize that makes a member hang after training, before replying (see its docstring).
STALL = Path(__file__).parent / "stall"


def _first_on_path(folder: Path) -> dict[str, str]:
    """The environment that puts `folder` first; the code under test stays importable."""
    return {
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p
        )
    }


def pretrained_study(folder: Path) -> Path:
    """examples/tiny-study.toml on a pretrained checkpoint: the example's small BERT trained
    in-process (40 steps) on other sentences than any member's, saved without its head.

    A federation then starts from pretrained weights and a fresh head, as it would from a
    real checkpoint such as MiniLM (`./dev demo`), at a fraction of the cost.
    """
    import importlib.util

    from gridpoint.federation.model_state import build_model
    from gridpoint.trainers.finetune import FineTuneSettings, finetune
    from gridpoint.trainers.study_config import load_study_config
    from gridpoint.trainers.tasks import task_type

    spec = importlib.util.spec_from_file_location("pretraining_text", folder / "tiny_pipeline.py")
    assert spec is not None and spec.loader is not None
    sentences = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sentences)
    kind = task_type("text-classification")
    # The federation's own architecture and public vocabulary; sentences no member holds.
    loaded = build_model(load_study_config(STUDY).model, 2, None, seed=0)
    train, evaluation = kind.prepare(sentences.make(320, seed=99), sentences.make(16, seed=98))
    finetune(loaded, train, evaluation, FineTuneSettings(3e-3, 16, 2, 0.0, 0.0, 10**9, 96, 0))
    checkpoint = folder / "pretrained"
    loaded.model.base_model.save_pretrained(checkpoint)  # the encoder: a member's head is new
    loaded.tokenizer.save_pretrained(checkpoint)
    config = next(line for line in STUDY.read_text().splitlines() if line.startswith("config ="))
    study = folder / "pretrained-study.toml"
    study.write_text(STUDY.read_text().replace(config, f"path = {json.dumps(str(checkpoint))}"))
    return study


def finish(proc: subprocess.Popen[str], timeout: float = 900) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture
def federation(make_home: MakeHome, daemons: list[Daemon], tmp_path: Path) -> Iterator[Federation]:
    host, *members = (make_home(name) for name in ("H", "M1", "M2", "M3"))
    homes = (host, *members)
    with ThreadPoolExecutor(len(homes)) as pool:
        running = {d.home.path.name: d for d in pool.map(Daemon.start, homes)}
    daemons += running.values()
    for member in members:
        trust(host, member, running[member.path.name].address)
        trust(member, host, running["H"].address)
    shutil.copy(ROOT / "examples" / "tiny_pipeline.py", tmp_path / "tiny_pipeline.py")
    fed = Federation(host, members, running, f"127.0.0.1:{free_port()}", tmp_path, [])
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


def test_secure_aggregation_with_dp_sums_two_honest_members_leaves_a_tamperer_out_and_a_third_node_gets_the_record(
    capsys: pytest.CaptureFixture[str],
    federation: Federation,
    make_home: MakeHome,
    daemons: list[Daemon],
) -> None:
    # Prepare: M1 and M2 are honest; M3 signs a digest of something it did not send. The
    # round runs under SecAgg+ with DP-FedAvg: the tamperer's every message is refused, so
    # it drops out of the protocol and the honest members' sum is still recovered (threshold
    # 2 of 3); members clip before masking, the host adds noise to the sum.
    *honest, tamperer = federation.members
    honest_ids = sorted(m.identity.node_id for m in honest)
    # Execute
    host = federation.start_host(
        "alpha",
        min_members=3,
        rounds=1,
        extra=("--secure-aggregation", "--dp", "--dp-epsilon", "8", "--dp-clip", "0.05"),
    )
    joins = [federation.join(m, "alpha") for m in honest]
    joins.append(federation.join(tamperer, "alpha", env=_first_on_path(TAMPER)))
    code, out, err = finish(host)
    member_results = [finish(j) for j in joins[:2]]
    tamperer_code, _, tamperer_err = finish(joins[2])
    # Assert: the honest members were summed, the tamperer refused by name.
    assert code == 0, err
    summary = json.loads(out)
    [only] = summary["rounds"]
    assert sorted(only["accepted"]) == honest_ids
    assert [x["node"] for x in only["refused"]] == [tamperer.identity.node_id]
    assert "signature" in only["refused"][0]["reason"]
    # What reached the ServerApp: the sum of two masked vectors, never an update.
    assert only["secure_aggregation"] == {"summed": 2, "array_bytes_received": 0}
    assert f"left out {tamperer.identity.node_id}" in err
    assert summary["model_changed"] is True
    assert summary["members"] == honest_ids
    # Assert: the privacy spent, per round and for the run, within the budget asked.
    assert 7.5 < only["privacy"]["epsilon"] <= 8.0
    assert summary["privacy"]["epsilon"] == pytest.approx(only["privacy"]["epsilon"], abs=1e-3)
    assert "privacy spent epsilon" in err
    for member, (mcode, mout, merr) in zip(honest, member_results, strict=True):
        assert mcode == 0, merr
        assert [r["round"] for r in json.loads(mout)["rounds"]] == [1]
        # Every message was answered by a fork of the member's server, none started cold.
        run = member.path / "fed-member" / "alpha" / "run-001"
        forks = (run / "clientapps.log").read_text().count("forked a ClientApp")
        assert forks == (run / "supernode.log").read_text().count("Sent successfully") > 0
    # So was the run's ServerApp, by the host's server.
    host_run = federation.host.path / "fed" / "alpha" / "run-001"
    assert (host_run / "serverapps.log").read_text().count("forked a ServerApp") == 1
    # Assert: the host kept the final global model; each honest member received the very
    # same files over the Artifacts service; the refused tamperer received nothing.
    kept = run_main(
        capsys, "model", "show", summary["model"], "--json", home=federation.host.path
    ).json()
    assert kept["kind"] == "federated"
    assert kept["record"] == summary["record_id"]
    assert sorted(kept["readers"]) == honest_ids
    for member, (_, mout, _) in zip(honest, member_results, strict=True):
        assert json.loads(mout)["model"] == summary["model"]
        received = run_main(
            capsys, "model", "show", summary["model"], "--json", home=member.path
        ).json()
        assert _digests(received) == _digests(kept)
    assert tamperer_code != 0
    # Its SecAgg+ keys were refused in the round's first stage: it never trained.
    assert "before its last round reached this node" in tamperer_err
    assert run_main(capsys, "model", "list", "--json", home=tamperer.path).json() == []
    # Assert: the federated run's record reaches a node that trusts only the host.
    third = make_home("C")
    trust(third, federation.host, federation.daemons["H"].address)
    dc = Daemon.start(third)
    daemons.append(dc)
    trust(federation.host, third, dc.address)
    run_main(capsys, "catalog", "sync", "--json", home=third.path).json()
    [record] = run_main(
        capsys, "catalog", "query", "kind = 'federated'", "--json", home=third.path
    ).json()
    assert record["signer"] == federation.host.identity.node_id
    assert record["members"] == honest_ids
    assert {p["step"] for p in record["curve"]} == {1}
    assert record["id"] == summary["record_id"] and "resumed_after_round" not in record
    assert record["privacy"]["protected"] == "training"
    assert record["privacy"]["epsilon"] == pytest.approx(summary["privacy"]["epsilon"])
    # Assert: a node that was no member may not fetch the model, and holds nothing after.
    refused = run_main(
        capsys,
        "model",
        "pull",
        summary["model"],
        "--from",
        federation.host.identity.node_id,
        home=third.path,
    )
    assert refused.returncode == 1
    assert "permission" in refused.stderr.lower() or "not allowed" in refused.stderr.lower()
    assert run_main(capsys, "model", "list", "--json", home=third.path).json() == []


def _digests(shown: dict[str, object]) -> dict[str, str]:
    files = shown["files"]
    assert isinstance(files, list) and files
    return {f["path"]: f["sha256"] for f in files}


def test_a_federation_outlives_a_killed_member_takes_a_late_joiner_refuses_a_stranger_and_resumes_after_its_host_is_killed(
    capsys: pytest.CaptureFixture[str],
    federation: Federation,
    make_home: MakeHome,
    daemons: list[Daemon],
) -> None:
    # Three stories in one deployment (Flower's fixed cost is per round and per start):
    # round 1: a member is killed mid-round, a node trusted only now joins, a node the host
    # does not trust is refused; then the host dies as in a crash, resumes, and round 2 has
    # the survivor and the late joiner, which joined the host before its crash and follows
    # it after. The model is pretrained (a fresh head on a pretrained encoder): one epoch a
    # round is enough for it to learn.
    survivor, victim, _ = federation.members
    study = pretrained_study(federation.workdir)
    # Round 1 does not wait out the timeout for the killed member: its SuperNode's heartbeats
    # stop (it sends them at Flower's shortest interval, 10 s: see stall/sitecustomize.py;
    # the SuperLink gives up after two missed), and the SuperLink answers for it. The
    # timeout is for the live members, whose first ClientApp took over 75 s on a loaded CI
    # machine. The first host forks its ServerApp; the resumed one starts it as Flower does.
    host = federation.start_host("gamma", rounds=2, epochs=1, round_timeout=240, study=study)
    # The late joiner is a node the host comes to trust only now, with the federation running.
    late = make_home("L")
    late_daemon = Daemon.start(late)
    daemons.append(late_daemon)
    trust(federation.host, late, late_daemon.address)
    trust(late, federation.host, federation.daemons["H"].address)
    # Members wait long enough for a host to come back.
    joins = [
        federation.join(survivor, "gamma", max_wait=120),
        federation.join(victim, "gamma", max_wait=120, env=_first_on_path(STALL)),
    ]
    status = victim.path / "fed-member" / "gamma" / "run-001" / "status.jsonl"
    deadline = time.monotonic() + 400
    # Its status gets a line per evaluation too (round 0 first): wait for round 1's training.
    while time.monotonic() < deadline and '"train_loss"' not in _read(status):
        time.sleep(0.2)
    assert '"train_loss"' in _read(status), "the victim never trained round 1"
    # Killed between training round 1 and delivering its update (it hangs there): mid-round.
    os.killpg(joins[1].pid, signal.SIGKILL)  # the join command
    assert kill_flower_processes_under(victim.path) >= 1  # its SuperNode, SuperExec, ClientApp
    # A third trusted member joins while round 1 waits for the victim; its ClientApps start
    # as Flower starts them, beside members whose ClientApps are forked.
    late_join = federation.join(late, "gamma", max_wait=120, extra=("--cold-clientapps",))
    # Meanwhile a node that trusts the host, but that the host does not trust, tries to join:
    # it is told so, with the command the host must run.
    stranger = make_home("U")
    trust(stranger, federation.host, federation.daemons["H"].address)
    refused_code, refused_out, refused_err = finish(
        federation.join(stranger, "gamma", max_wait=6), timeout=120
    )
    assert refused_code == 1, refused_out + refused_err
    assert "refused this node's SuperNode key: it does not trust this node yet" in refused_err
    assert f"peer add <this node's address> --fingerprint {stranger.tls_fingerprint}" in refused_err
    folder = federation.host.path / "fed" / "gamma" / "run-001"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and '"round": 1' not in _read(folder / "checkpoint.json"):
        time.sleep(0.2)
    assert '"round": 1' in _read(folder / "checkpoint.json"), "round 1 was never checkpointed"
    # Execute: the host dies as in a crash (its command, its SuperLink, its ServerApp).
    os.killpg(host.pid, signal.SIGKILL)
    kill_flower_processes_under(folder)
    _, first_err = host.communicate(timeout=60)
    resumed = federation.start_host("gamma", resume=True, extra=("--cold-serverapp",))
    code, out, err = finish(resumed)
    survivor_code, survivor_out, survivor_err = finish(joins[0])
    late_code, late_out, late_err = finish(late_join)
    # Assert: the killed member cost round 1 its update, never the run; the node trusted
    # while the host ran took part from the next round on, across the host's restart.
    assert "now trusting L" in first_err
    assert code == 0, err
    summary = json.loads(out)
    ids = sorted(m.identity.node_id for m in (survivor, late))
    assert [sorted(r["accepted"]) for r in summary["rounds"]] == [
        [survivor.identity.node_id],
        ids,
    ]
    assert summary["members"] == ids
    # The SuperLink answered for the killed member; round 1 names it, not the SuperLink.
    refused = {r["node"]: r["reason"] for r in summary["rounds"][0]["refused"]}
    assert refused[victim.identity.node_id].startswith("member failed"), refused
    # Assert: round 1 from before the kill, 2 after, none twice; the run says so.
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert summary["resumed_after"] == 1
    assert "resumed after round 1" in err
    [published] = run_main(
        capsys, "catalog", "query", "kind = 'federated'", "--json", home=federation.host.path
    ).json()
    assert published["id"] == summary["record_id"] and published["resumed_after_round"] == 1
    # Assert: the federation of a pretrained model learnt: its final global model beats
    # round 0 (the pretrained encoder with a fresh head), on the members' held-back data.
    first = summary["baseline"]["eval_metrics"]["accuracy"]
    last = summary["rounds"][-1]["eval_metrics"]["accuracy"]
    assert last > first + 0.2, (first, last)
    # Assert: the members followed the resumed host to its end and hold its final model.
    assert survivor_code == 0, survivor_err
    assert json.loads(survivor_out)["model"] == summary["model"]
    assert late_code == 0, late_err
    assert [r["round"] for r in json.loads(late_out)["rounds"]] == [2]
    assert json.loads(late_out)["model"] == summary["model"]
    late_run = late.path / "fed-member" / "gamma" / "run-001"
    assert not (late_run / "clientapps.log").exists()
    assert "Sent successfully" in (late_run / "supernode.log").read_text()
    # The first host's ServerApp was a fork (killed with it); the resumed host's, Flower's own.
    assert (folder / "serverapps.log").read_text().count("forked a ServerApp") == 1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
