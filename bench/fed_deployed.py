"""A deployed federation on loopback: SecAgg+ round time beside a plain round, and resume time.

Real processes, as users run them (issue 27; bench/fed_secagg.py measures SecAgg+ in one
process only): a host and members, each a gridpoint node with its own home and daemon, trusting
each other as `peer add` pins them; `gridpoint fed host` (SuperLink, ServerApp) and one
`gridpoint fed join` per member (SuperNode, ClientApps), on examples/tiny-study.toml with
examples/tiny_pipeline.py, exchanging LoRA adapters (`--lora`; --full for all weights).

1. Per member count N (--members): one plain federation and one `--secure-aggregation`
   federation with the same settings (--rounds rounds each); each round's seconds as the
   host's `--json` summary gives them (a round's training, aggregation and evaluation, from
   the ServerApp's own clock), plain beside SecAgg+, and their ratio (goal: at most 2x at 10
   members for LoRA payloads).
2. Resume (--resume-members members, 3 rounds): once round 1 is checkpointed the host's
   process group and its Flower processes are SIGKILLed, as in a crash, and `fed host --resume`
   is timed from its start to its SuperLink listening and to the resumed run's first round
   event (stderr), beside the same figures of the fresh host it replaced. The members, started
   with a generous --max-wait, follow the resumed host.

Timings are printed, never asserted; they depend on the machine's load (run it alone). Every
process it starts is stopped on exit, Ctrl-C or SIGTERM included; it writes only under a
temporary folder, removed at the end (--keep keeps it, with every process's log).

    python bench/fed_deployed.py [--members 2 5 10] [--rounds 2] [--resume-members 2]
        [--no-resume] [--full] [--keep] [--apps forked|cold|both]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.federation.processes import free_port, kill_flower_processes_under  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from tests.helpers import Daemon, set_sync, trust  # noqa: E402

STUDY = ROOT / "examples" / "tiny-study.toml"
_STARTED: list[subprocess.Popen[str]] = []
_DAEMONS: list[Daemon] = []


def _stop_all(work: Path | None) -> None:
    """Every process this bench started, by its process group; then Flower's orphans."""
    for proc in _STARTED:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in _STARTED:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _STARTED.clear()
    for daemon in _DAEMONS:
        with contextlib.suppress(Exception):
            daemon.kill()
    _DAEMONS.clear()
    if work is not None:
        # Flower's SuperExec, ServerApp and ClientApps run detached; their FLWR_HOME is ours.
        kill_flower_processes_under(work)


@dataclass
class Stderr:
    """A child's stderr, each line with the monotonic time it arrived."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first(self, pattern: str, after: float = 0.0) -> tuple[float, re.Match[str]] | None:
        for at, line in list(self.lines):
            match = re.search(pattern, line)
            if match and at >= after:
                return at, match
        return None

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match[str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first(pattern)
            if found is not None:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.5)  # the reader's last lines
                found = self.first(pattern)
                if found is not None:
                    return found
                break
            time.sleep(0.1)
        raise RuntimeError(f"no line /{pattern}/ in time: {self.text()[-3000:]}")

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


class Bench:
    """Node homes and daemons under one folder; federations between them."""

    def __init__(self, work: Path, lora: bool) -> None:
        self.work = work
        self.lora = lora
        #: Members start each ClientApp, and hosts each ServerApp, as Flower does
        #: (`fed join --cold-clientapps`, `fed host --cold-serverapp`).
        self.cold = False
        self.pipeline_dir = work / "pipeline"
        self.pipeline_dir.mkdir()
        shutil.copy(ROOT / "examples" / "tiny_pipeline.py", self.pipeline_dir / "tiny_pipeline.py")
        self.members: list[tuple[NodeHome, Daemon]] = []
        self.hosts: dict[str, tuple[NodeHome, Daemon]] = {}

    def _node(self, name: str) -> tuple[NodeHome, Daemon]:
        home = NodeHome(self.work / "nodes" / name)
        home.init(name)
        # No periodic catalog sync: a daemon's own round never lands inside a timed one.
        home = set_sync(home, interval_s=0.0)
        daemon = Daemon.start(home)
        _DAEMONS.append(daemon)
        return home, daemon

    def host_for(self, name: str, n: int) -> NodeHome:
        """A host trusting exactly members 1..n, each of which trusts it."""
        if name not in self.hosts:
            while len(self.members) < n:
                self.members.append(self._node(f"M{len(self.members) + 1}"))
            host, daemon = self._node(name)
            for member, member_daemon in self.members[:n]:
                trust(host, member, member_daemon.address)
                trust(member, host, daemon.address)
            self.hosts[name] = (host, daemon)
        return self.hosts[name][0]

    def start_host(
        self, host: NodeHome, name: str, address: str, argv: list[str]
    ) -> tuple[subprocess.Popen[str], Stderr, float, Path]:
        out = self.work / "logs" / f"{name}-host-{time.monotonic_ns()}.json"
        out.parent.mkdir(exist_ok=True)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gridpoint", "--home", str(host.path), "fed", "host"]
            + argv
            + ["--json"],
            stdout=out.open("w"),
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        _STARTED.append(proc)
        return proc, Stderr(proc), started, out

    def new_host(
        self,
        host: NodeHome,
        name: str,
        address: str,
        rounds: int,
        n: int,
        secure: bool,
    ) -> tuple[subprocess.Popen[str], Stderr, float, Path]:
        argv = [
            "--federation",
            name,
            "--study",
            str(STUDY),
            "--rounds",
            str(rounds),
            "--min-members",
            str(n),
            "--listen",
            address,
            "--round-timeout",
            "600",
            "--param",
            "learning_rate=0.003",
            "--param",
            "epochs=1",
        ]
        if self.lora:
            argv.append("--lora")
        if secure:
            argv.append("--secure-aggregation")
        if self.cold:
            argv.append("--cold-serverapp")
        return self.start_host(host, name, address, argv)

    def join(self, n: int, name: str, address: str, max_wait: int) -> list[subprocess.Popen[str]]:
        joins = []
        for member, _ in self.members[:n]:
            log = self.work / "logs" / f"{name}-{member.path.name}.log"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gridpoint",
                    "--home",
                    str(member.path),
                    "fed",
                    "join",
                    address,
                    "--federation",
                    name,
                    "--pipeline",
                    "tiny_pipeline:load",
                    "--pipeline-dir",
                    str(self.pipeline_dir),
                    "--max-wait",
                    str(max_wait),
                    "--json",
                    *(["--cold-clientapps"] if self.cold else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log.open("w"),
                text=True,
                cwd=ROOT,
                start_new_session=True,
            )
            _STARTED.append(proc)
            joins.append(proc)
        return joins

    def finish(
        self,
        host: subprocess.Popen[str],
        err: Stderr,
        out: Path,
        joins: list[subprocess.Popen[str]],
        timeout: float,
    ) -> dict[str, Any]:
        try:
            host.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
        for proc in joins:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        kill_flower_processes_under(self.work)
        time.sleep(0.5)
        if host.returncode != 0:
            raise RuntimeError(f"fed host exited {host.returncode}: {err.text()[-3000:]}")
        summary: dict[str, Any] = json.loads(out.read_text())
        return summary

    def federation(self, n: int, rounds: int, secure: bool) -> dict[str, Any]:
        host = self.host_for(f"H{n}", n)
        name = f"{'secure' if secure else 'plain'}{n}"
        address = f"127.0.0.1:{free_port()}"
        proc, err, _, out = self.new_host(host, name, address, rounds, n, secure)
        err.wait_for("SuperLink on", 120)
        joins = self.join(n, name, address, max_wait=120)
        return self.finish(proc, err, out, joins, timeout=rounds * 900 + 300)

    def resume(self, n: int) -> dict[str, float]:
        """A 3-round run killed after round 1's checkpoint, then resumed: start-up times."""
        host = self.host_for(f"H{n}", n)
        name = "resume"
        address = f"127.0.0.1:{free_port()}"
        proc, err, started, _ = self.new_host(host, name, address, 3, n, secure=False)
        fresh_link = err.wait_for("SuperLink on", 120)[0] - started
        joins = self.join(n, name, address, max_wait=300)
        fresh_round = err.wait_for(r"^round [1-9]\d*/", 1200)[0] - started
        folder = host.path / "fed" / name / "run-001"
        checkpoint = folder / "checkpoint.json"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and '"round": 1' not in _read(checkpoint):
            time.sleep(0.1)
        if '"round": 1' not in _read(checkpoint):
            raise RuntimeError("round 1 was never checkpointed")
        # A crash: the host's command, its SuperLink, its SuperExec and ServerApp.
        os.killpg(proc.pid, signal.SIGKILL)
        kill_flower_processes_under(folder)
        proc.wait()
        resumed, rerr, rstarted, rout = self.start_host(
            host, name, address, ["--resume", name, *(["--cold-serverapp"] if self.cold else [])]
        )
        rlink = rerr.wait_for("SuperLink on", 120)[0] - rstarted
        done = int(rerr.wait_for(r"^resuming federation run \S+ after round (\d+)", 120)[1][1])
        deadline = time.monotonic() + 1200
        first: float | None = None
        while first is None and time.monotonic() < deadline:
            for at, line in list(rerr.lines):
                match = re.match(r"^round (\d+)/", line)
                if match and int(match[1]) > done:
                    first = at - rstarted
                    break
            if resumed.poll() is not None and first is None:
                raise RuntimeError(f"the resumed host stopped: {rerr.text()[-3000:]}")
            time.sleep(0.1)
        if first is None:
            raise RuntimeError("the resumed run never finished a round")
        summary = self.finish(resumed, rerr, rout, joins, timeout=1800)
        seconds = {r["round"]: r["seconds"] for r in summary["rounds"]}
        return {
            "resumed_after": done,
            "fresh_superlink_s": fresh_link,
            "fresh_first_round_s": fresh_round,
            "resumed_superlink_s": rlink,
            "resumed_first_round_s": first,
            "round_1_seconds": seconds.get(1, float("nan")),
            "first_resumed_round_seconds": seconds.get(done + 1, float("nan")),
        }


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, nargs="*", default=[2, 5, 10])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--resume-members", type=int, default=2)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--full", action="store_true", help="all weights, not LoRA adapters")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--apps",
        choices=("forked", "cold", "both"),
        default="forked",
        help="members' ClientApps and hosts' ServerApps forked (the default of fed join and "
        "fed host), cold (--cold-clientapps, --cold-serverapp) or "
        "both, one after the other for each member count",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gp-fed-deployed-"))
    atexit.register(_stop_all, work)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(work, lora=not args.full)
    payload = "all weights" if args.full else "LoRA adapters"
    print(f"# {payload}, {args.rounds} round(s) per federation, loopback; folder {work}")
    try:
        if args.members:
            print(
                f"{'members':>7}  {'apps':>10}  {'plain s/round':>24}  "
                f"{'SecAgg+ s/round':>24}  {'ratio':>5}  {'plain wall':>10}  {'SecAgg+ wall':>12}"
            )
        modes = ("forked", "cold") if args.apps == "both" else (args.apps,)
        for n, mode in ((n, mode) for n in args.members for mode in modes):
            bench.cold = mode == "cold"
            row: dict[bool, tuple[list[float], float]] = {}
            for secure in (False, True):
                began = time.monotonic()
                summary = bench.federation(n, args.rounds, secure)
                wall = time.monotonic() - began
                rounds = summary["rounds"]
                short = [r["round"] for r in rounds if len(r["accepted"]) != n]
                if short:
                    print(f"  note: N={n} secure={secure}: round(s) {short} had < {n} accepted")
                row[secure] = ([float(r["seconds"]) for r in rounds], wall)
                payload_bytes = summary.get("initial_payload_bytes")
            plain, secure_ = row[False][0], row[True][0]
            print(
                f"{n:>7}  {mode:>10}  {' '.join(f'{s:.1f}' for s in plain):>24}  "
                f"{' '.join(f'{s:.1f}' for s in secure_):>24}  "
                f"{_mean(secure_) / _mean(plain):>5.2f}  {row[False][1]:>10.0f}  "
                f"{row[True][1]:>12.0f}  ({payload_bytes} bytes sent to each member)",
                flush=True,
            )
        if not args.no_resume:
            r = bench.resume(args.resume_members)
            print(
                f"\n# resume: {args.resume_members} members, plain, killed after round "
                f"{r['resumed_after']:.0f}'s checkpoint (seconds from the command's start)"
            )
            print(
                f"{'':>8}  {'to SuperLink':>12}  {'to first round event':>20}  {'that round':>10}"
            )
            print(
                f"{'fresh':>8}  {r['fresh_superlink_s']:>12.1f}  "
                f"{r['fresh_first_round_s']:>20.1f}  {r['round_1_seconds']:>10.1f}"
            )
            print(
                f"{'resumed':>8}  {r['resumed_superlink_s']:>12.1f}  "
                f"{r['resumed_first_round_s']:>20.1f}  {r['first_resumed_round_seconds']:>10.1f}",
                flush=True,
            )
    finally:
        _stop_all(work)
        if args.keep:
            print(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
