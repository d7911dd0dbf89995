"""A second first hour: what a newcomer trips over, through `main(argv)` in this process.

One message for a home without `init`; ids as a unique prefix everywhere (peers too); what
`peer remove` keeps; one exit rule for `catalog sync` and no log lines on its terminal; the
example record `publish` takes; tables that never split a number or an id; one form of time;
the filter reference the README holds; a pipe closed early. Real processes only where the
process is what is tested.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import Peer
from gridpoint.node.store.sql_store import open_store
from tests.cli_main import run_main
from tests.helpers import ROOT, Daemon, MakeHome, pin, signed_records, trust

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_a_home_without_init_gets_one_message_whatever_the_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    seen = set()
    for home in (tmp_path / "missing", tmp_path / "empty"):
        for command in (
            ("identity",), ("node", "status"), ("node", "stop"), ("peer", "list"),
            ("catalog", "query"), ("catalog", "sync"), ("model", "list"),
        ):  # fmt: skip
            ran = run_main(capsys, *command, home=home)
            assert ran.returncode == 1, command
            [line] = ran.stderr.strip().splitlines()
            seen.add(line.replace(str(home), "HOME"))
    assert seen == {
        "error: no node at HOME: create one with `gridpoint --home HOME init --name ORG`"
    }


def _fake_peer(node_id: str) -> Peer:
    return Peer(node_id, "127.0.0.1:9", "Ghost", "00" * 32, b"", datetime.now(UTC))


def test_peer_ids_take_a_unique_prefix_and_remove_says_what_it_keeps(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, db_url: str
) -> None:
    # Prepare: peer X signed 3 records here; a second peer's id starts like X's.
    home: NodeHome = make_home("A")
    x: NodeHome = make_home("X")
    store = open_store(db_url)
    try:
        pin(store, x, "127.0.0.1:9")
        store.add_records(signed_records(x, 3))
        twin = x.identity.node_id[:4] + ("0" if x.identity.node_id[4] != "0" else "1") * 36
        store.add_peer(_fake_peer(twin))
    finally:
        store.close()
    db = ("--db", db_url)
    # Execute
    ambiguous = run_main(capsys, *db, "peer", "remove", x.identity.node_id[:4], home=home.path)
    sync_ambiguous = run_main(
        capsys, *db, "catalog", "sync", "--peer", x.identity.node_id[:4], home=home.path
    )
    listed = run_main(capsys, *db, "peer", "list", "--json", home=home.path).json()
    removed = run_main(
        capsys, *db, "peer", "remove", x.identity.node_id[:5], "--json", home=home.path
    ).json()
    # Assert
    for ran in (ambiguous, sync_ambiguous):
        assert ran.returncode == 1 and "is the start of 2 trusted peers' ids" in ran.stderr
    assert removed == {"node_id": x.identity.node_id, "name": "X", "records_kept": 3}
    assert all(TIME.fullmatch(p["added_at"]) for p in listed)
    left = run_main(capsys, *db, "peer", "list", "--json", home=home.path).json()
    assert [p["node_id"] for p in left] == [twin]
    assert len(run_main(capsys, *db, "catalog", "query", "--json", home=home.path).json()) == 3


def test_publish_takes_the_example_record_of_the_readme(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome
) -> None:
    home: NodeHome = make_home("A")
    example = ROOT / "examples" / "run.json"
    assert "gridpoint publish examples/run.json" in (ROOT / "README.md").read_text()
    first = run_main(capsys, "publish", str(example), "--json", home=home.path).json()
    again = run_main(capsys, "publish", str(example), "--json", home=home.path).json()
    assert first["new"] and not again["new"] and first["id"] == again["id"]


def test_tables_never_split_a_number_or_an_id_at_80_columns(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a record with long numbers, shown with many columns on 80.
    home: NodeHome = make_home("A")
    run_main(capsys, "publish", str(ROOT / "examples" / "run.json"), home=home.path)
    monkeypatch.setenv("COLUMNS", "80")
    columns = "task.type,model.base,params.learning_rate,metrics.accuracy,metrics.eval_loss,model.num_parameters"
    # Execute
    ran = run_main(capsys, "catalog", "query", "", "--columns", columns, home=home.path)
    [record] = run_main(capsys, "catalog", "query", "--json", home=home.path).json()
    # Assert
    lines = ran.stdout.splitlines()
    assert not any("text-classification" in line for line in lines)  # text gave way
    for whole in (record["id"][:12], "3e-05", "0.904", "0.262", "66955010"):
        assert any(whole in line for line in lines), whole


def test_a_table_written_to_a_pipe_keeps_one_line_per_row(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the same record and columns, printed where no terminal says how wide to be.
    home: NodeHome = make_home("A")
    run_main(capsys, "publish", str(ROOT / "examples" / "run.json"), home=home.path)
    monkeypatch.delenv("COLUMNS", raising=False)
    columns = "task.type,model.base,params.learning_rate,metrics.accuracy,metrics.eval_loss,model.num_parameters"
    # Execute
    ran = run_main(capsys, "catalog", "query", "", "--columns", columns, home=home.path)
    [record] = run_main(capsys, "catalog", "query", "--json", home=home.path).json()
    # Assert: the record's row is one line holding every value whole, as grep wants it.
    [row] = [line for line in ran.stdout.splitlines() if record["id"][:12] in line]
    for whole in ("text-classification", record["model"]["base"], "3e-05", "0.904", "66955010"):
        assert whole in row, (whole, ran.stdout)


def test_the_readme_holds_the_filter_reference_the_help_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gridpoint.node.store.filter_reference import filter_reference
    from gridpoint.node.store.query_filter import parse_filter

    reference = filter_reference()
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- filter-reference")[1].split("<!-- /filter-reference -->")[0]
    assert f"```text\n{reference}\n```" in block
    helped = run_main(capsys, "catalog", "query", "--help")
    assert reference in helped.stdout
    example = reference.split("Example: ", 1)[1].replace("\n ", "")
    assert parse_filter(example) is not None


@pytest.mark.slow
def test_catalog_sync_fails_when_any_peer_fails_and_prints_no_log_lines(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: B trusts A (running, 5 records) and a ghost (nothing listens at its address).
    a, b, ghost = make_home("A"), make_home("B"), make_home("Ghost")
    store = open_store(a.db_url())
    store.add_records(signed_records(a, 5))
    store.close()
    da = Daemon.start(a)
    daemons.append(da)
    trust(b, a, da.address)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    for truster, trusted, address in ((a, b, closed), (b, ghost, closed)):
        store = open_store(truster.db_url())
        pin(store, trusted, address)
        store.close()
    # Execute
    partly = run_main(capsys, "catalog", "sync", "--json", home=b.path)
    run_main(capsys, "peer", "remove", ghost.identity.node_id[:8], home=b.path)
    fully = run_main(capsys, "catalog", "sync", home=b.path)
    # Assert: one rule, whatever the number of peers.
    assert partly.returncode == 1
    by_peer = {r["peer"]: r for r in json.loads(partly.stdout)}
    assert by_peer[a.identity.node_id]["new"] == 5 and not by_peer[a.identity.node_id]["error"]
    assert by_peer[ghost.identity.node_id]["error"]
    assert fully.returncode == 0
    for ran in (partly, fully):
        assert '{"ts"' not in ran.stderr and '"level"' not in ran.stderr


@pytest.mark.slow
def test_a_pipe_closed_early_ends_the_command_quietly(make_home: MakeHome) -> None:
    # Prepare: more rows than a pipe holds.
    home: NodeHome = make_home("A")
    store = open_store(home.db_url())
    store.add_records(signed_records(home, 3000))
    store.close()
    # Execute: `gridpoint catalog query --format csv | head -1`
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridpoint", "--home", str(home.path), "catalog", "query", "",
         "--format", "csv", "--limit", "5000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    header = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    # Assert
    assert proc.wait(timeout=60) == 141 and header.startswith(b"id,")
    assert err == b""
