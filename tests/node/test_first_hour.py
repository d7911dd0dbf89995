"""A new user's first hour, through the CLI: each test is a surprise that must not return.

Exclusive homes and ports, plain one-line errors, `node status`, devices checked before a
study starts, trials cut off by a kill, and the federation commands' own checks. `node start`
and the killed run go through a real process; the other commands run in this process
(tests/cli_main.py), against real daemons where they need one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from gridpoint.federation.flower_certs import superlink_material
from gridpoint.federation.processes import new_run_folder
from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import open_store
from gridpoint.schema import record_to_json
from tests.cli_main import Ran, run_main
from tests.helpers import ROOT, Daemon, MakeHome, cli, cli_json, loopback_server, make_record
from tests.tasks.studies import write_fast_example

STUDY = str(ROOT / "examples" / "tiny-study.toml")


def one_line_error(result: subprocess.CompletedProcess[str] | Ran) -> str:
    """The error a command printed; asserts it failed with exactly one line and no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Makes a file unwritable even for root (chattr +i), or by mode for other users."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o400)
        try:
            yield
        finally:
            path.chmod(0o600)


def test_a_second_daemon_on_the_same_home_is_refused_naming_the_first(
    make_home: MakeHome, daemons: list[Daemon]
) -> None:
    home = make_home("A")
    first = Daemon.start(home)
    daemons.append(first)
    result = cli("node", "start", "--listen", "127.0.0.1:0", home=home.path)
    error = one_line_error(result)
    assert f"PID {first.process.pid}" in error and first.address in error


def test_a_port_held_by_another_node_is_refused_in_one_line(
    make_home: MakeHome, daemons: list[Daemon]
) -> None:
    a, b = make_home("A"), make_home("B")
    first = Daemon.start(a)
    daemons.append(first)
    result = cli("node", "start", "--listen", first.address, home=b.path)
    assert "address is in use" in one_line_error(result)
    assert first.process.poll() is None


def test_node_status_says_whether_the_daemon_runs_and_where(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    home = make_home("A")
    stopped = run_main(capsys, "node", "status", "--json", home=home.path).json()
    daemon = Daemon.start(home)
    daemons.append(daemon)
    running = run_main(capsys, "node", "status", "--json", home=home.path).json()
    assert stopped["running"] is False and stopped["address"] is None
    assert running["running"] is True and running["address"] == daemon.address
    assert running["pid"] == daemon.process.pid and running["records"] == 0
    assert run_main(capsys, "--version").stdout.startswith("gridpoint ")


def test_a_missing_home_names_the_folder_and_the_command_that_makes_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run_main(capsys, "node", "status", home=tmp_path / "nowhere")
    error = one_line_error(result)
    assert str(tmp_path / "nowhere") in error and "init --name" in error


def test_a_read_only_store_is_refused_at_start_in_plain_words(make_home: MakeHome) -> None:
    home = make_home("A")
    open_store(home.db_url()).close()
    with immutable(home.sqlite_path):
        result = cli("node", "start", "--listen", "127.0.0.1:0", home=home.path)
    assert "is read-only" in one_line_error(result)


def test_a_corrupt_store_is_refused_at_start_in_plain_words(make_home: MakeHome) -> None:
    home = make_home("A")
    for suffix in ("-wal", "-shm"):
        Path(f"{home.sqlite_path}{suffix}").unlink(missing_ok=True)
    home.sqlite_path.write_bytes(b"this is not a database" * 100)
    result = cli("node", "start", "--listen", "127.0.0.1:0", home=home.path)
    assert "not a readable SQLite database" in one_line_error(result)


@pytest.mark.parametrize("device", ["tpu", "cuda:1"])
def test_an_unusable_device_is_refused_before_anything_trains(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, device: str
) -> None:
    home = tmp_path / "node"
    run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    result = run_main(capsys, "tune", STUDY, "--trials", "1", "--device", device, home=home)
    assert f"--device {device}" in one_line_error(result)
    assert run_main(capsys, "catalog", "query", "", "--json", home=home).json() == []


def test_a_trial_left_running_by_a_killed_run_is_recorded_as_failed(tmp_path: Path) -> None:
    # Prepare: a study whose trial 0 was started and never finished (a second Ctrl-C).
    home = tmp_path / "node"
    cli_json("init", "--name", "A", home=home)
    storage = f"sqlite:///{home / 'studies.db'}"
    cut_off = optuna.create_study(
        study_name="tiny-sentiment", storage=storage, direction="maximize"
    )
    trial = cut_off.ask()
    # Its last heartbeat is a day old: the run that beat for it is gone.
    with sqlite3.connect(home / "studies.db") as db:
        db.execute(
            "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?, datetime('now', '-1 day'))",
            (trial._trial_id,),
        )
    # Execute
    study = str(write_fast_example(tmp_path / "study"))  # what it trains is not the story
    result = cli("tune", study, "--trials", "1", home=home, timeout=300)
    # Assert
    assert result.returncode == 0, result.stderr
    assert "trial 0 was left running by an interrupted run" in result.stderr
    states = [
        t.state for t in optuna.load_study(study_name="tiny-sentiment", storage=storage).trials
    ]
    assert states[0] == optuna.trial.TrialState.FAIL and len(states) == 2


def test_fed_help_lists_every_flag_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    top = run_main(capsys, "fed", "--help")
    host = run_main(capsys, "fed", "host", "--help")
    join = run_main(capsys, "fed", "join", "--help")
    assert top.returncode == host.returncode == join.returncode == 0
    host_help, join_help = (" ".join(r.stdout.split()) for r in (host, join))
    assert "host" in top.stdout and "join" in top.stdout
    assert "--round-timeout" in host_help and "(default: 600.0)" in host_help
    assert "--max-wait" in join_help and "(default: 60.0)" in join_help


def test_fed_host_on_a_busy_port_says_so_before_starting_flower(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome
) -> None:
    home = make_home("H")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_main(
            capsys, "fed", "host", "--federation", "f", "--study", STUDY,
            "--listen", f"127.0.0.1:{port}", "--min-members", "1", home=home.path,
        )  # fmt: skip
    assert f"127.0.0.1:{port} is in use" in one_line_error(result)
    assert not (home.path / "fed").exists()


def test_fed_join_waits_up_to_max_wait_for_a_host(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome
) -> None:
    home = make_home("M")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result = run_main(
        capsys, "fed", "join", f"127.0.0.1:{port}", "--federation", "f",
        "--pipeline", "tiny_pipeline:load", "--pipeline-dir", str(ROOT / "examples"),
        "--max-wait", "4", home=home.path,
    )  # fmt: skip
    waited = time.monotonic() - started
    assert "within --max-wait 4 s" in one_line_error(result)
    assert waited >= 4


@contextlib.contextmanager
def fake_superlink(host_home: NodeHome, federation: str) -> Iterator[int]:
    """A TLS server presenting the SuperLink certificate a host would make for federation."""
    material = superlink_material(host_home.tls, "127.0.0.1", federation)
    cert, key = host_home.path / "sl.pem", host_home.path / "sl.key"
    cert.write_bytes(material.cert_pem)
    key.write_bytes(material.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handshake(connection: socket.socket) -> None:
        with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
            pass

    with loopback_server(handshake) as port:
        yield port


def test_fed_join_refuses_a_host_that_runs_another_federation(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome
) -> None:
    host, member = make_home("H"), make_home("M")
    with fake_superlink(host, "sentiment") as port:
        result = run_main(
            capsys, "fed", "join", f"127.0.0.1:{port}", "--federation", "wrong-name",
            "--pipeline", "tiny_pipeline:load", "--pipeline-dir", str(ROOT / "examples"),
            "--max-wait", "5", home=member.path,
        )  # fmt: skip
    error = one_line_error(result)
    assert "hosts 'sentiment', not federation 'wrong-name'" in error
    assert not (member.path / "fed-member").exists()


def test_every_federation_run_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    parent = tmp_path / "fed" / "sentiment"
    first = new_run_folder(parent)
    (first / "result.json").write_text("{}")
    second = new_run_folder(parent)
    assert [first.name, second.name] == ["run-001", "run-002"]
    assert (first / "result.json").read_text() == "{}"


def test_sync_from_a_peer_that_does_not_trust_us_says_so_and_what_to_run(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: A pins B; B has not pinned A.
    a, b = make_home("A"), make_home("B")
    db = Daemon.start(b)
    daemons.append(db)
    added = run_main(
        capsys, "peer", "add", db.address, "--fingerprint", b.tls_fingerprint, home=a.path
    )
    assert added.returncode == 0, added.stderr
    # Execute
    result = run_main(capsys, "catalog", "sync", "--json", home=a.path)
    # Assert
    [report] = json.loads(result.stdout)
    assert result.returncode == 1
    assert "does not trust this node" in report["error"]
    assert "peer add" in report["error"] and a.tls_fingerprint in report["error"]


def test_catalog_query_refuses_a_limit_below_one_and_warns_of_unknown_names(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: one record with metrics accuracy and eval_loss.
    home = make_home("A")
    record = tmp_path / "record.json"
    record.write_text(json.dumps(record_to_json(make_record())))
    assert run_main(capsys, "publish", str(record), home=home.path).returncode == 0
    # Execute
    query = ("catalog", "query")
    negative = run_main(capsys, *query, "", "--limit", "-1", home=home.path)
    typo = run_main(capsys, *query, "metrics.acuracy > 0.5", home=home.path)
    order = run_main(capsys, *query, "", "--order-by", "metrics.acc desc", home=home.path)
    bad_key = run_main(capsys, *query, "", "--order-by", "metric.accuracy", home=home.path)
    # Assert
    assert "--limit must be at least 1" in one_line_error(negative)
    assert "no record has metrics.acuracy; did you mean metrics.accuracy?" in typo.stderr
    assert "no record has metrics.acc; did you mean metrics.accuracy?" in order.stderr
    assert "unknown key" in one_line_error(bad_key)


def test_addresses_and_unreachable_peers_are_explained_in_words(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome
) -> None:
    home = make_home("A")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    add = ("peer", "add")
    scheme = run_main(capsys, *add, "http://127.0.0.1:50551", "--fingerprint", "AA", home=home.path)
    refused = run_main(capsys, *add, f"127.0.0.1:{closed}", "--fingerprint", "AA", home=home.path)
    assert "is not HOST:PORT (no scheme" in one_line_error(scheme)
    assert "nothing listens there (connection refused)" in one_line_error(refused)
