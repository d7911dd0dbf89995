"""Test helpers: run the CLI as a real process, start daemons, make records."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from gridpoint.node.catalog import sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE, record_to_proto
from gridpoint.node.store.base import CatalogStore, Peer, StoredRecord
from gridpoint.schema import BaseModelInfo, CurvePoint, RunRecord, TaskDescriptor
from gridpoint.v1 import catalog_pb2, envelope_pb2, records_pb2

ROOT = Path(__file__).resolve().parent.parent

# The `make_home` fixture (tests/conftest.py): make_home("OrgA") -> an initialized NodeHome.
MakeHome = Callable[[str], NodeHome]


def cli(
    *args: str,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Runs `gridpoint ARGS` in a child process."""
    argv = [sys.executable, "-m", "gridpoint"]
    if home is not None:
        argv += ["--home", str(home)]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input_text,
        cwd=ROOT,
    )


def cli_json(*args: str, home: Path | None = None, **kw: Any) -> Any:
    result = cli(*args, "--json", home=home, **kw)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass
class Daemon:
    """A `gridpoint node start` child process in its own session."""

    home: NodeHome
    process: subprocess.Popen[str]
    address: str
    log_path: Path
    extra: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, home: NodeHome, *extra: str, listen: str = "127.0.0.1:0") -> Daemon:
        log_path = home.path / f"daemon-{time.monotonic_ns()}.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridpoint",
                "--home",
                str(home.path),
                *extra,
                "node",
                "start",
                "--listen",
                listen,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
            cwd=ROOT,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            process.kill()
            raise AssertionError(f"daemon did not start: {line!r} {log_path.read_text()}")
        return cls(home, process, line.removeprefix("listening on ").strip(), log_path, list(extra))

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


def make_record(
    i: int = 0,
    *,
    task_type: str = "text-classification",
    accuracy: float = 0.8,
    learning_rate: float = 3e-5,
    base: str = "bert-base-uncased",
) -> RunRecord:
    return RunRecord(
        task=TaskDescriptor(type=task_type, num_labels=2, size_bucket="1k-10k", language="en"),
        model=BaseModelInfo(base=base, family="bert"),
        hyperparameters={
            "learning_rate": learning_rate,
            "batch_size": 16 + i % 3 * 16,
            "optimizer": "adamw",
            "seed": i,
        },
        curve=(CurvePoint(10, "accuracy", accuracy / 2), CurvePoint(20, "accuracy", accuracy)),
        metrics={"accuracy": accuracy, "eval_loss": 1 - accuracy},
    )


def signed_records(home: NodeHome, n: int, start: int = 0) -> list[StoredRecord]:
    return [
        sign_record(home.identity, make_record(start + i, accuracy=0.5 + (i % 50) / 100))
        for i in range(n)
    ]


def trust(a: NodeHome, b: NodeHome, b_address: str) -> None:
    """a trusts b: what `peer add` does (the certificate probed at b_address, then pinned), in
    this process; a child process per call cost two seconds of start-up in every end-to-end
    test (tests/node/test_network.py keeps one `peer add` through the real CLI)."""
    from gridpoint.node.peers.trust import add_peer
    from gridpoint.node.store.sql_store import open_store

    store = open_store(a.db_url())
    try:
        add_peer(a, store, b_address, b.tls_fingerprint)
    finally:
        store.close()


def crafted_envelope(
    home: NodeHome,
    i: int = 0,
    *,
    mutate: Callable[[records_pb2.RunRecord], None] | None = None,
    signed_at_ms: int | None = None,
) -> envelope_pb2.SignedEnvelope:
    """A genuinely signed record envelope whose payload may break the record rules: mutate
    edits the wire message after the schema had its say (what a buggy or hostile peer signs)."""
    message = record_to_proto(make_record(i))
    if mutate is not None:
        mutate(message)
    payload = message.SerializeToString(deterministic=True)
    return sign_envelope(home.identity, payload, RUN_RECORD_TYPE, signed_at_ms=signed_at_ms)


#: What a crafted peer answers: (cursor asked for) -> the page it serves.
PageFn = Callable[[str], catalog_pb2.SyncPage]


class CraftedPeer:
    """A misbehaving peer: a real gRPC server over mutual TLS with home's certificate, whose
    Catalog.Sync serves whatever page_fn makes (no authentication of its own)."""

    def __init__(self, home: NodeHome, client: NodeHome, page_fn: PageFn) -> None:
        self.home = home
        self.calls = 0

        def sync(raw: bytes, _context: grpc.ServicerContext) -> bytes:
            self.calls += 1
            request = catalog_pb2.SyncRequest.FromString(raw)
            return page_fn(request.cursor).SerializeToString()

        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "gridpoint.v1.Catalog", {"Sync": grpc.unary_unary_rpc_method_handler(sync)}
                ),
            )
        )
        credentials = grpc.ssl_server_credentials(
            [(home.tls.key_pem, home.tls.cert_pem)],
            root_certificates=client.tls.cert_pem,
            require_client_auth=True,
        )
        port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.address = f"127.0.0.1:{port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait()


def set_sync(home: NodeHome, **values: float) -> NodeHome:
    """The home with [sync] settings rewritten in its config.toml (e.g. interval_s=1.0)."""
    text = home.config_path.read_text()
    for key, value in values.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        assert n == 1, f"no [sync] {key} in config.toml"
    home.config_path.write_text(text)
    return NodeHome(home.path)


def pin(store: CatalogStore, home: NodeHome, address: str) -> None:
    """store's node trusts home's node at address, as `peer add` pins it (no probe)."""
    store.add_peer(
        Peer(
            node_id=home.identity.node_id,
            address=address,
            name=home.config.name,
            fingerprint=home.tls_fingerprint,
            cert_pem=home.tls.cert_pem,
            added_at=datetime.now(UTC),
        )
    )


def worst_filter() -> str:
    """The costliest filter the limits allow that we know of: MAX_FILTER_DEPTH parentheses,
    MAX_FILTER_TERMS comparisons (each parameter comparison an EXISTS subquery), a full IN
    list and a LIKE pattern of many wildcards, within MAX_FILTER_CHARS. It matches no record
    of make_record(), so a query with it reads every row."""
    from gridpoint.node.store.query_filter import (
        MAX_FILTER_CHARS,
        MAX_FILTER_DEPTH,
        MAX_FILTER_TERMS,
        MAX_IN_VALUES,
    )

    values = ", ".join(str(16 * i + 1) for i in range(MAX_IN_VALUES))
    inner = f"params.batch_size IN ({values})"
    # The IN list's own parentheses are one level of the nesting.
    text = "(" * (MAX_FILTER_DEPTH - 1) + inner + ")" * (MAX_FILTER_DEPTH - 1)
    text += " or model.base LIKE '" + "%b" * 60 + "%'"
    for i in range(MAX_FILTER_TERMS - 2):
        text += f" or params.p{i} != 'x'" if i % 2 else f" or metrics.m{i} > 0.5"
    assert len(text) <= MAX_FILTER_CHARS, len(text)
    return text


def child_pids(pid: int) -> list[int]:
    """The process ids of pid's running children (from /proc: Linux only)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def loaded_by(statements: str, modules: Sequence[str]) -> list[str]:
    """Which of `modules` a fresh interpreter holds after running `statements` (one line)."""
    report = f"print(json.dumps(sorted(m for m in {tuple(modules)!r} if m in sys.modules)))"
    code = f"import json, sys; {statements}; {report}"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@contextlib.contextmanager
def loopback_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 for the block, its ephemeral port yielded: each connection is
    handed to `handle` (on the server's one thread) and closed after it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                handle(connection)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()
