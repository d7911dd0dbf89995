"""Many live queries at once against one real daemon: answers per second, latency, errors.

Node A (a real `gridpoint node start` process) holds N signed records (README's mix of task
types, models and metrics); node B, a trusted peer, sends C live queries at once (the README's
filter with an order, limit 100) over one mutual-TLS channel, every request signed as
`catalog query --peers` signs it. Answers are counted as they come back, not decoded or
verified (that is the asking node's work, not the answering one's). Printed per round:
queries answered per second (C / time from the first request to the last answer), p50 and
p95 latency of the answered ones, and the calls refused: RESOURCE_EXHAUSTED (the node's
admission bound; an asking node tries again later) apart from every other error, and the
answering daemon's CPU time per answer (/proc: what an answer costs it, whatever share of the
cores the rest of a busy machine leaves). Goal
(issue 29): 1,000 at once, 20k records, 2 cores: at least 300/s, p95 under 1 s, 0 errors.

    python bench/query_load.py [--records 20000] [--concurrent 1000] [--rounds 3] \
        [--baseline DIR] [--baseline-answer-processes N] [--answer-processes N] [--db URL] \
        [--floor] [--floor-aio]

--baseline DIR (a checkout of another version, e.g. `git archive COMMIT | tar -x -C DIR`)
starts a second daemon from that code over a copy of the same home, and the rounds alternate
between the two, so both are measured side by side on the same (busy) machine.

--floor (and --floor-aio) adds bench/answer_floor.py to the rounds: a gRPC server with the
daemon's TLS, thread pool and limits that answers every call with a live answer captured from
the daemon and does nothing else (--floor-aio: gRPC's asyncio server); one query only. Its
rate and p95 under the same load are what the Python gRPC server itself allows on this
machine ("daemon CPU" is then that server's own).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.node.catalog import sign_record  # noqa: E402
from gridpoint.node.config import SecurityConfig  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.protocol.methods import QUERY  # noqa: E402
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request  # noqa: E402
from gridpoint.node.protocol.tls import tls_hostname  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from gridpoint.v1 import catalog_pb2  # noqa: E402
from tests.helpers import Daemon, child_pids, make_record, pin  # noqa: E402

#: The README's live query (`catalog query "metrics.accuracy > 0.8" --peers`), and its long
#: filter with an order.
QUERIES = {
    "live": ("metrics.accuracy > 0.8", ""),
    "filter+order": (
        "task.type = 'text-classification' and metrics.accuracy > 0.8 "
        "and params.learning_rate < 1e-4 and model.base LIKE 'bert%'",
        "metrics.accuracy desc",
    ),
}
TASKS = ["text-classification", "token-classification", "causal-lm", "summarization"]
BASES = ["bert-base-uncased", "roberta-base", "distilbert-base-uncased", "gpt2", "t5-small"]


def fill(home: NodeHome, n: int) -> None:
    store = open_store(home.db_url())
    rng = random.Random(0)
    for start in range(0, n, 5000):
        store.add_records(
            [
                sign_record(
                    home.identity,
                    make_record(
                        i,
                        task_type=rng.choice(TASKS),
                        accuracy=round(rng.uniform(0.4, 0.99), 4),
                        learning_rate=10 ** rng.uniform(-6, -3),
                        base=rng.choice(BASES),
                    ),
                )
                for i in range(start, min(n, start + 5000))
            ]
        )
    store.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process and its running children used so far: what an
    answer costs the answering daemon (its answering processes included), whatever share of
    the cores the rest of the machine leaves it."""
    return own_cpu_seconds(pid) + sum(cpu_seconds(c) for c in child_pids(pid))


def own_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process itself used so far, its children apart: with
    answering processes, the daemon's share (gRPC, authentication, the hand-off), which one
    GIL bounds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(
    channel: grpc.Channel,
    asker: NodeHome,
    query: tuple[str, str],
    concurrent: int,
    limit: int,
    timeout: float,
) -> dict[str, Any]:
    """Sends `concurrent` signed queries at once; waits for every answer or refusal."""
    text, order = query
    body = catalog_pb2.QueryRequest(filter=text, limit=limit, order_by=order).SerializeToString()
    auths = [sign_request(asker.identity, QUERY, body) for _ in range(concurrent)]
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        QUERY, request_serializer=None, response_deserializer=None
    )
    done = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    codes: dict[str, int] = {}
    left = [concurrent]

    def finished(sent: float, future: Any) -> None:
        code = future.code()
        with lock:
            if code == grpc.StatusCode.OK:
                latencies.append(time.perf_counter() - sent)
            else:
                codes[code.name] = codes.get(code.name, 0) + 1
            left[0] -= 1
            if left[0] == 0:
                done.set()

    start = time.perf_counter()
    for auth in auths:
        sent = time.perf_counter()
        future = call.future(body, metadata=((AUTH_METADATA_KEY, auth),), timeout=timeout)
        future.add_done_callback(partial(finished, sent))
    done.wait()
    wall = time.perf_counter() - start
    latencies.sort()
    ok = len(latencies)
    return {
        "answered": ok,
        "per_s": ok / wall,
        "wall_s": wall,
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p95_s": latencies[int(0.95 * (ok - 1))] if latencies else float("nan"),
        "exhausted": codes.pop("RESOURCE_EXHAUSTED", 0),
        "errors": sum(codes.values()),
        "error_codes": str(codes or ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--queries", nargs="+", choices=sorted(QUERIES), default=["live"])
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument(
        "--db",
        default="",
        help="the answering node's database (an empty PostgreSQL one, e.g. "
        "postgresql://postgres@127.0.0.1:5432/gp_qload; default: SQLite in its home); "
        "both daemons share it",
    )
    parser.add_argument(
        "--answer-processes",
        type=int,
        default=0,
        help="[node] answer_processes of this version's daemon (the baseline keeps its own)",
    )
    parser.add_argument(
        "--baseline-answer-processes",
        type=int,
        default=None,
        help="[node] answer_processes of the baseline's daemon (default: its own default, "
        "for versions without the setting)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure a server that answers every call with a captured answer and nothing else",
    )
    parser.add_argument(
        "--floor-aio", action="store_true", help="the same floor with gRPC's asyncio server"
    )
    parser.add_argument(
        "--max-calls",
        type=int,
        default=None,
        help="security.max_concurrent_calls for both daemons (default: the config's own); "
        "at --concurrent or above nothing is refused, and the figures are the rate a queue drains at",
    )
    args = parser.parse_args()
    if (args.floor or args.floor_aio) and len(args.queries) > 1:
        parser.error("--floor replays one captured answer: give one query with --queries")
    if args.baseline_answer_processes is not None and args.baseline is None:
        parser.error("--baseline-answer-processes needs --baseline DIR (the baseline's code)")
    work = Path(tempfile.mkdtemp(prefix="gp-bench-qload-"))
    a, b = NodeHome(work / "a"), NodeHome(work / "b")
    a.init("A")
    b.init("B")
    if args.db:
        text = a.config_path.read_text()
        a.config_path.write_text(re.sub(r'(?m)^url = ""$', f"url = {args.db!r}", text, count=1))
        a = NodeHome(a.path)
    t0 = time.perf_counter()
    fill(a, args.records)
    print(f"{args.records} records filled in {time.perf_counter() - t0:.0f} s")
    store_a = open_store(a.db_url())
    pin(store_a, b, "127.0.0.1:1")
    store_a.close()
    config = (a.path / "config.toml").read_text()
    (a.path / "config.toml").write_text(
        re.sub(
            r"(?m)^answer_processes = .*$", f"answer_processes = {args.answer_processes}", config
        )
    )
    if args.max_calls is not None:
        config = (a.path / "config.toml").read_text()
        (a.path / "config.toml").write_text(
            re.sub(
                r"(?m)^max_concurrent_calls = .*$",
                f"max_concurrent_calls = {args.max_calls}",
                config,
            )
        )
    baseline: subprocess.Popen[str] | None = None
    daemon: Daemon | None = None
    floors: dict[str, subprocess.Popen[str]] = {}
    addresses: dict[str, str] = {}
    try:
        if args.baseline is not None:
            base = work / "a-baseline"
            shutil.copytree(a.path, base)
            # The baseline's own defaults (older versions have no such settings).
            own = ["answer_processes"] + (
                ["max_concurrent_calls"] if args.max_calls is None else []
            )
            lines = (base / "config.toml").read_text().splitlines()
            kept = "\n".join(line for line in lines if not any(k in line for k in own)) + "\n"
            if args.baseline_answer_processes is not None:
                kept = kept.replace(
                    "[node]\n", f"[node]\nanswer_processes = {args.baseline_answer_processes}\n", 1
                )
            (base / "config.toml").write_text(kept)
            baseline, addresses["baseline"] = start_from(args.baseline, base)
        daemon = Daemon.start(a)
        addresses["this"] = daemon.address
        kinds = ["floor"] * args.floor + ["floor-aio"] * args.floor_aio
        if kinds:
            folder = floor_folder(work, a, b, daemon.address, QUERIES[args.queries[0]], args.limit)
            for kind in kinds:
                floors[kind], addresses[kind] = start_floor(
                    folder, kind, NodeHome(a.path).config.security
                )
        channels = {name: channel_to(a, b, address) for name, address in addresses.items()}
        pids = {"this": daemon.process.pid, **{k: p.pid for k, p in floors.items()}}
        if baseline is not None:
            pids["baseline"] = baseline.pid
        for name in args.queries:
            run(channels, pids, b, name, args)
        for channel in channels.values():
            channel.close()
    finally:
        for floor in floors.values():
            floor.kill()
            floor.wait(10)
        if daemon is not None:
            daemon.kill()
        if baseline is not None:
            baseline.kill()
            baseline.wait(10)


def start_from(code: Path, home: Path) -> tuple[subprocess.Popen[str], str]:
    """`gridpoint node start` run from another checkout's code; its process and address."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridpoint",
            "--home",
            str(home),
            "node",
            "start",
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=code,
        env=env,
    )
    return process, listening(process, "baseline daemon")


def listening(process: subprocess.Popen[str], what: str) -> str:
    """The address a server just started says it listens on (its first line of stdout)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"{what} did not start: {line!r}")
    return line.removeprefix("listening on ").strip()


def floor_folder(
    work: Path, a: NodeHome, b: NodeHome, address: str, query: tuple[str, str], limit: int
) -> Path:
    """What bench/answer_floor.py serves from: a's TLS, b's certificate, and b's live answer
    to query (filter, order), captured from a's daemon at address."""
    folder = work / "floor"
    folder.mkdir()
    (folder / "server.key").write_bytes(a.tls.key_pem)
    (folder / "server.crt").write_bytes(a.tls.cert_pem)
    (folder / "client.crt").write_bytes(b.tls.cert_pem)
    text, order = query
    body = catalog_pb2.QueryRequest(filter=text, limit=limit, order_by=order)
    raw = body.SerializeToString()
    with channel_to(a, b, address) as channel:
        call = channel.unary_unary(QUERY, request_serializer=None, response_deserializer=None)
        answer = call(
            raw, metadata=((AUTH_METADATA_KEY, sign_request(b.identity, QUERY, raw)),), timeout=60
        )
    (folder / "answer.bin").write_bytes(answer)
    print(f"floor: serves a captured answer of {len(answer)} bytes")
    return folder


def start_floor(
    folder: Path, kind: str, limits: SecurityConfig
) -> tuple[subprocess.Popen[str], str]:
    """bench/answer_floor.py started over folder under the answering node's limits; its
    process and address."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "answer_floor.py"),
            str(folder),
            f"--max-calls={limits.max_concurrent_calls}",
            f"--max-message-bytes={limits.max_message_bytes}",
            *(["--aio"] if kind == "floor-aio" else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, listening(process, kind)


def channel_to(a: NodeHome, b: NodeHome, address: str) -> grpc.Channel:
    """b's mutual-TLS channel to a daemon of a at address."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=a.tls.cert_pem,
        private_key=b.tls.key_pem,
        certificate_chain=b.tls.cert_pem,
    )
    return grpc.secure_channel(
        address,
        credentials,
        options=[
            ("grpc.ssl_target_name_override", tls_hostname(a.identity.node_id)),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ],
    )


def run(
    channels: dict[str, grpc.Channel],
    pids: dict[str, int],
    asker: NodeHome,
    name: str,
    args: argparse.Namespace,
) -> None:
    query = QUERIES[name]
    print(f"{name}: filter {query[0]!r}, order {query[1] or 'none'!r}, limit {args.limit}")
    rounds: dict[str, list[dict[str, Any]]] = {version: [] for version in channels}
    for version, channel in channels.items():
        warm = one_round(channel, asker, query, 10, args.limit, args.timeout)
        print(f"  {version} warm-up: {warm['answered']:.0f} answered, {warm['errors']:.0f} errors")
    for i in range(args.rounds):
        for version, channel in channels.items():
            pid = pids[version]
            cpu, own, asking = cpu_seconds(pid), own_cpu_seconds(pid), time.process_time()
            r = one_round(channel, asker, query, args.concurrent, args.limit, args.timeout)
            r["cpu_ms"] = 1000 * (cpu_seconds(pid) - cpu) / max(1, r["answered"])
            r["own_ms"] = 1000 * (own_cpu_seconds(pid) - own) / max(1, r["answered"])
            # This process: signing the requests, TLS, receiving the answers.
            r["asker_ms"] = 1000 * (time.process_time() - asking) / max(1, r["answered"])
            rounds[version].append(r)
            print(
                f"  {version:8} round {i + 1}: {r['answered']:5.0f} answered of "
                f"{args.concurrent} in {r['wall_s']:5.1f} s = {r['per_s']:6.0f}/s  "
                f"p50 {r['p50_s']:.2f} s  p95 {r['p95_s']:.2f} s  "
                f"refused busy {r['exhausted']:.0f}  other errors {r['errors']:.0f} "
                f"{r['error_codes']}  daemon CPU {r['cpu_ms']:.1f} ms/answer "
                f"(its own process {r['own_ms']:.2f})  "
                f"asking CPU {r['asker_ms']:.1f} ms/answer  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for version, results in rounds.items():
        med = {
            k: statistics.median(r[k] for r in results)
            for k in ("per_s", "p95_s", "exhausted", "errors", "cpu_ms", "own_ms")
        }
        print(
            f"  {version} median of {args.rounds}: {med['per_s']:.0f} answers/s, "
            f"p95 {med['p95_s']:.2f} s, refused busy {med['exhausted']:.0f}, "
            f"other errors {med['errors']:.0f}, daemon CPU {med['cpu_ms']:.1f} ms/answer "
            f"(its own process {med['own_ms']:.2f}) (goal: >= 300/s, p95 < 1 s, 0 errors)"
        )


if __name__ == "__main__":
    main()
