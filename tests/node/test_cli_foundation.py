"""`init`, `identity` and `publish` through the command line, as a user runs them.

A first `init` and `identity` run as real processes; the other commands run in this process
(tests/cli_main.py), which prints and exits the same way.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gridpoint.node.store.sql_store import open_store
from tests.cli_main import run_main
from tests.helpers import cli_json, loaded_by
from tests.node.test_run_record import MINIMAL


def test_init_creates_a_complete_home_with_private_files_0600(tmp_path: Path) -> None:
    home = tmp_path / "org"
    info = cli_json("init", "--name", "Org A", home=home)

    def mode(name: str) -> int:
        return stat.S_IMODE((home / name).stat().st_mode)

    assert {mode("identity.key"), mode("tls.key"), mode("node.secret")} == {0o600}
    assert mode(".") == 0o700
    assert 'name = "Org A"' in (home / "config.toml").read_text()
    ident = cli_json("identity", home=home)
    assert ident["node_id"] == info["node_id"] and ident["fingerprint"] == info["fingerprint"]
    assert len(ident["node_id"]) == 40


def test_init_twice_is_refused_and_keeps_the_identity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "org"
    first = run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    key = (home / "identity.key").read_bytes()
    again = run_main(capsys, "init", "--name", "B", home=home)
    assert again.returncode == 1
    assert "already holds a node identity" in again.stderr and "Traceback" not in again.stderr
    assert (home / "identity.key").read_bytes() == key
    assert run_main(capsys, "identity", "--json", home=home).json()["node_id"] == first["node_id"]


def test_gridpoint_home_replaces_the_home_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "org"
    monkeypatch.setenv("GRIDPOINT_HOME", str(home))
    run_main(capsys, "init", "--name", "A", "--json").json()
    assert (home / "identity.key").exists()
    monkeypatch.setenv("GRIDPOINT_HOME", "")
    missing = run_main(capsys, "identity")
    assert missing.returncode == 1 and "--home" in missing.stderr


def test_publish_twice_gives_one_id_and_one_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "org"
    run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(MINIMAL))
    first = run_main(capsys, "publish", str(path), "--json", home=home).json()
    second = run_main(capsys, "publish", str(path), "--json", home=home).json()
    assert first["id"] == second["id"] and first["new"] and not second["new"]
    store = open_store(f"sqlite:///{home / 'catalog.db'}")
    assert store.count_records() == 1
    store.close()


def test_refused_publish_names_the_field_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    home = tmp_path / "org"
    run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(MINIMAL))
    run_main(capsys, "publish", str(good), "--json", home=home).json()
    db = home / "catalog.db"
    store = open_store(f"sqlite:///{db}")
    before = [r.envelope for r in store.query(None, limit=10)]
    store.close()
    bad_cases = {
        "unknown.json": json.dumps({**MINIMAL, "secret_notes": "x"}),
        "nan.json": json.dumps(MINIMAL).replace("0.85", "NaN"),
        "type.json": json.dumps({**MINIMAL, "metrics": {"accuracy": "high"}}),
        "broken.json": "{not json",
    }
    for name, text in bad_cases.items():
        (tmp_path / name).write_text(text)
        result = run_main(capsys, "publish", str(tmp_path / name), home=home)
        assert result.returncode == 1, name
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    store = open_store(f"sqlite:///{db}")
    assert [r.envelope for r in store.query(None, limit=10)] == before
    store.close()


def test_the_parser_loads_no_database_library_so_help_and_usage_errors_answer_at_once() -> None:
    # Every command's parser is built before any runs: a service imported by a parser's
    # module (tune's, once) made `gridpoint --help` wait over a second for SQLAlchemy.
    statements = "from gridpoint.node.cli.main import build_parser; build_parser()"
    assert loaded_by(statements, ("sqlalchemy", "sqlmodel", "psycopg", "optuna")) == []
