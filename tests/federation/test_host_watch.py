"""`fed host` reading the ServerApp's journal: when too few members come, it says who did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gridpoint.errors import GridpointError
from gridpoint.federation.host import HostOptions, _stop_superseded_runs, _watch


def test_too_few_members_in_time_is_said_with_who_came_and_who_was_expected(
    tmp_path: Path,
) -> None:
    # A host whose first round is already overdue (a negative timeout stands for the wait),
    # one member online of the two it needs.
    opts = HostOptions(
        federation="few",
        study=tmp_path / "s.toml",
        rounds=1,
        min_members=2,
        listen="127.0.0.1:0",
        lora=False,
        strategy="fedavg",
        round_timeout=-200.0,
        params={},
        db=None,
    )
    (tmp_path / "progress.jsonl").write_text('{"event": "start", "rounds": 1}\n')
    superlink = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(GridpointError) as failed:
            _watch(tmp_path, opts, superlink, lambda line: None, ["OrgA", "OrgB"], lambda: ["OrgA"])
    finally:
        superlink.kill()
        superlink.wait()
    message = str(failed.value)
    assert "came: OrgA;" in message
    assert "expected 2 of: OrgA, OrgB" in message


def test_every_run_config_key_the_host_submits_is_declared_by_the_flower_app(
    tmp_path: Path,
) -> None:
    # Flower refuses a run whose --run-config names a key the app does not declare.
    import tomllib
    from types import SimpleNamespace

    from gridpoint.federation.host import APP_DIR, run_config
    from gridpoint.trainers.study_config import load_study_config
    from tests.helpers import ROOT

    study = load_study_config(ROOT / "examples" / "tiny-study.toml")
    opts = HostOptions(
        federation="keys",
        study=tmp_path / "s.toml",
        rounds=1,
        min_members=2,
        listen="127.0.0.1:0",
        lora=True,
        strategy="fedavg",
        round_timeout=30.0,
        params={},
        db=None,
        secure_aggregation=True,
        dp=True,
    )
    params = {"learning_rate": 0.001, "batch_size": 16, "epochs": 1, "weight_decay": 0.0}
    settings = run_config(opts, study, params, SimpleNamespace(num_labels=2), [], tmp_path, 1.5)
    declared = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"][
        "config"
    ]
    assert set(settings) <= set(declared), sorted(set(settings) - set(declared))


def _runs(*statuses: str) -> str:
    runs = [{"run-id": str(100 + i), "status": s} for i, s in enumerate(statuses)]
    return "Loading config...\n" + json.dumps({"success": True, "runs": runs})


def test_a_resumed_host_stops_every_unfinished_run_and_goes_on_where_flower_refuses() -> None:
    # The state a resumed SuperLink lists: runs that ended, the run the crash interrupted,
    # and one that finishes between the listing and its stop (Flower refuses to stop it).
    calls: list[list[str]] = []

    def flwr(args: list[str]) -> str:
        calls.append(args)
        if args[0] == "ls":
            return _runs("finished:completed", "running", "finished:stopped", "pending", "starting")
        if args[1] == "103":
            raise GridpointError("flwr stop failed: run 103 is already finished")
        return "{}"

    _stop_superseded_runs(flwr)
    assert [c[:2] for c in calls[1:]] == [["stop", "101"], ["stop", "103"], ["stop", "104"]]


@pytest.mark.parametrize("answer", ["not json at all", '{"runs": [{"id": 1}]}', "FAIL"])
def test_a_listing_that_fails_or_is_not_understood_stops_nothing_and_raises_nothing(
    answer: str,
) -> None:
    calls: list[list[str]] = []

    def flwr(args: list[str]) -> str:
        calls.append(args)
        if answer == "FAIL":
            raise GridpointError("flwr ls failed")
        return answer

    _stop_superseded_runs(flwr)
    assert [c[0] for c in calls] == ["ls"]
