"""The promotion hook: the event on stdin, failures logged and never blocking, time bounded."""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from pathlib import Path

import pytest

from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.artifacts.hooks import run_hook
from gridpoint.node.artifacts.registry import Registry
from gridpoint.node.config import RegistryConfig
from gridpoint.node.store.sql_store import SqlStore
from tests.artifacts.helpers import info, model_folder
from tests.helpers import MakeHome


def python_hook(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_each_alias_change_runs_the_hook_with_the_event_and_a_failure_leaves_it_standing(
    store: SqlStore, make_home: MakeHome, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = make_home("A")
    artifacts = ArtifactStore(home, store)
    a = artifacts.add(model_folder(tmp_path / "a", size=1000, seed=1), info(metric="accuracy"))
    b = artifacts.add(model_folder(tmp_path / "b", size=1000, seed=2), info(metric="accuracy"))
    events = tmp_path / "events.jsonl"
    # Records each event, then fails on the second one.
    hook = python_hook(
        "import sys, pathlib\n"
        f"p = pathlib.Path({str(events)!r})\n"
        "old = p.read_text() if p.exists() else ''\n"
        "p.write_text(old + sys.stdin.read() + '\\n')\n"
        "sys.exit(0 if not old else 3)\n"
    )
    registry = Registry(artifacts, store, RegistryConfig(on_promotion=hook), home.identity.node_id)
    registry.register("sentiment", a.id)
    registry.register("sentiment", b.id)

    first = registry.set_alias("sentiment", "champion", 1)
    same = registry.set_alias("sentiment", "champion", 1)
    with caplog.at_level(logging.WARNING, logger="gridpoint.registry"):
        failed = registry.set_alias("sentiment", "champion", 2, force=True)

    seen = [json.loads(line) for line in events.read_text().splitlines()]
    assert first.hook is not None and first.hook.ok
    assert same.hook is None  # nothing changed: no event
    assert failed.hook is not None and not failed.hook.ok and failed.hook.exit_code == 3
    assert registry.resolve("sentiment@champion").version == 2
    assert [(e["event"], e["version"], e["previous_version"]) for e in seen] == [
        ("alias_set", 1, None),
        ("alias_set", 2, 1),
    ]
    assert seen[1]["model"] == "sentiment" and seen[1]["protected"] is True
    assert seen[1]["artifact"]["id"] == b.id and seen[1]["artifact"]["metric"] == "accuracy"
    assert Path(seen[1]["artifact"]["path"]) == artifacts.folder(b)
    assert seen[1]["node_id"] == home.identity.node_id
    assert [r.getMessage() for r in caplog.records] == [
        "promotion hook for sentiment@champion failed: exit status 3 (the change stands)"
    ]


def test_a_hook_that_hangs_is_stopped_with_its_children_at_the_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "child-survived"
    hook = f"sh -c {shlex.quote(f'(sleep 1; touch {marker}) & sleep 60')}"

    start = time.monotonic()
    outcome = run_hook(hook, {"event": "alias_set"}, 0.3, label="m@champion")
    took = time.monotonic() - start
    time.sleep(1.5)

    assert not outcome.ok and outcome.exit_code is None
    assert outcome.message == "still running after 0.3 s: stopped"
    assert took < 1
    assert not marker.exists()


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("/nonexistent/deploy --stage", "cannot start '/nonexistent/deploy': no such file"),
        ('deploy "unclosed', "registry.on_promotion does not parse"),
        (
            python_hook("import sys; print('x' * 5000); print('\\x1b[31mboom'); sys.exit(2)"),
            "exit status 2: [31mboom",
        ),
    ],
)
def test_a_hook_that_cannot_run_or_fails_is_one_line(command: str, message: str) -> None:
    outcome = run_hook(command, {"event": "alias_set"}, 10, label="m@champion")

    assert not outcome.ok
    assert outcome.message.startswith(message)
    assert "\x1b" not in outcome.message and len(outcome.message) < 300
