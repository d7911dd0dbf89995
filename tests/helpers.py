"""Test helpers: run the CLI as a real process, start daemons, make records."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpoint.node.catalog import sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import StoredRecord
from gridpoint.schema import BaseModelInfo, CurvePoint, RunRecord, TaskDescriptor

ROOT = Path(__file__).resolve().parent.parent


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
    """a trusts b (through the real CLI)."""
    result = cli("peer", "add", b_address, "--fingerprint", b.tls_fingerprint, home=a.path)
    assert result.returncode == 0, result.stderr
