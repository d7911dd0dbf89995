"""`fed host` reading the ServerApp's journal: when too few members come, it says who did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gridpoint.errors import GridpointError
from gridpoint.federation.host import HostOptions, _watch


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
