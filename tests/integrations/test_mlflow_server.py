"""`import mlflow` from a tracking server: MLflow's own server app, and servers that misbehave.

The servers run in this process on 127.0.0.1, port 0: MLflow's real Flask app over a copy of
a tracking database, and a tiny HTTP server that pages forever, stalls, or answers errors with
terminal escape sequences in them.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gridpoint.integrations.mlflow_runs import ReadLimits, read_experiment
from gridpoint.node.home import NodeHome
from tests.cli_main import run_main
from tests.helpers import MakeHome

TASK = ("--task", "text-classification", "--train-size", "5000", "--language", "en")

#: (method, path) -> (status, JSON body) of the fake server; `calls` counts requests.
Answer = Callable[[str, str, int], tuple[int, Any]]


class FakeServer:
    """An HTTP server in a thread whose every answer `answer(method, path, n)` decides."""

    def __init__(self, answer: Answer, stall: threading.Event | None = None) -> None:
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                owner.calls += 1
                if stall is not None:
                    stall.wait(30)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, body = answer(self.command, self.path, owner.calls)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


def _run(i: int) -> dict[str, Any]:
    return {
        "info": {"run_id": f"r{i:06d}", "status": "FINISHED", "start_time": 1_700_000_000_000 + i},
        "data": {"params": [{"key": "lr", "value": "0.001"}],
                 "metrics": [{"key": "val_acc", "value": 0.7, "step": 3}]},
    }  # fmt: skip


def _endless(method: str, path: str, n: int) -> tuple[int, Any]:
    """A server that always has one more page, of runs and of history points."""
    if "experiments/get-by-name" in path:
        return 200, {"experiment": {"experiment_id": "1", "name": "E"}}
    if "runs/search" in path:
        return 200, {"runs": [_run(n)], "next_page_token": f"t{n}"}
    return 200, {"metrics": [{"step": n, "value": 0.5}], "next_page_token": f"h{n}"}


def test_a_server_that_always_has_more_pages_is_capped_and_progress_is_told(
    servers: list[FakeServer],
) -> None:
    # Prepare
    server = FakeServer(_endless)
    servers.append(server)
    told: list[str] = []
    limits = ReadLimits(max_pages=20, max_runs=12, max_points=7)
    # Execute
    source = read_experiment(server.uri, "E", "val_acc", None, limits=limits, progress=told.append)
    listed_calls = server.calls
    [(_label, _key, read)] = list(source.runs())[:1]
    run = read()
    # Assert: 12 runs (the run cap came before the page cap), 7 history points.
    assert len(source) == 12 and listed_calls == 1 + 12
    assert source.notes and "still had more" in source.notes[0]
    assert not isinstance(run, str) and len(run.curve) == 7
    assert told[0].startswith("asking") and "page 12, 12 runs" in told[-1]


def test_a_stalled_server_is_given_up_on_in_time_in_one_line(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, servers: list[FakeServer]
) -> None:
    # Prepare: the server accepts the connection and never answers.
    home: NodeHome = make_home("A")
    release = threading.Event()
    server = FakeServer(_endless, stall=release)
    servers.append(server)
    # Execute
    started = time.monotonic()
    try:
        ran = run_main(
            capsys, "import", "mlflow", "--tracking-uri", server.uri, "--experiment", "E",
            "--timeout", "1", *TASK, home=home.path,
        )  # fmt: skip
    finally:
        release.set()
    took = time.monotonic() - started
    # Assert
    assert ran.returncode == 1 and took < 10
    assert ran.stderr.strip().splitlines() == [
        f"error: cannot read the MLflow server at {server.uri}: no answer within 1 s"
    ]


def test_an_unreachable_server_is_one_line_at_once(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome
) -> None:
    home: NodeHome = make_home("A")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ran = run_main(
        capsys, "import", "mlflow", "--tracking-uri", f"http://127.0.0.1:{port}",
        "--experiment", "E", *TASK, home=home.path,
    )  # fmt: skip
    assert ran.returncode == 1 and "nothing listens there" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1


def test_a_server_error_reaches_the_terminal_without_its_control_characters(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, servers: list[FakeServer]
) -> None:
    # Prepare
    home: NodeHome = make_home("A")
    hostile = "boom \x1b[31mred\x1b]0;owned\x07 \u202eevil\r\nsecond line" + "x" * 5000

    def failing(_method: str, _path: str, _n: int) -> tuple[int, Any]:
        return 500, {"error_code": "INTERNAL_ERROR", "message": hostile}

    server = FakeServer(failing)
    servers.append(server)
    # Execute
    ran = run_main(
        capsys, "import", "mlflow", "--tracking-uri", f"http://user:ZQPASSWORD@{server.uri[7:]}",
        "--experiment", "E", *TASK, home=home.path,
    )  # fmt: skip
    # Assert
    assert ran.returncode == 1
    [line] = ran.stderr.strip().splitlines()
    assert "answered HTTP 500: boom [31mred" in line and "second line" in line
    assert not any(ch in line for ch in "\x1b\x07\u202e\r") and len(line) < 400
    assert "ZQPASSWORD" not in line


@pytest.mark.filterwarnings("ignore:starlette.middleware.wsgi is deprecated")
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_mlflow_s_own_server_gives_the_records_its_database_gives(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, mlflow_template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Prepare: MLflow's server app over a copy of the database, in this process.
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", f"sqlite:///{db}")
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    from mlflow.server import app, handlers
    from werkzeug.serving import make_server

    monkeypatch.setattr(handlers, "_tracking_store", None)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home: NodeHome = make_home("A")  # a dry run writes nothing: one home, one secret
    args = ("import", "mlflow", "--experiment", "ZQEXPERIMENT", "--metric", "val_acc", *TASK,
            "--dry-run", "--json")  # fmt: skip
    # Execute
    try:
        served = run_main(
            capsys, *args, "--tracking-uri", f"http://127.0.0.1:{server.port}",
            home=home.path,
        ).json()  # fmt: skip
    finally:
        server.shutdown()
    read = run_main(capsys, *args, "--tracking-uri", f"sqlite:///{db}", home=home.path).json()
    # Assert
    assert served["imported"] == read["imported"] == 9
    assert [r["record"] for r in served["records"]] == [r["record"] for r in read["records"]]
