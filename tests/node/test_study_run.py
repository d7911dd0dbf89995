"""The tune service's own rules, called in-process (no study trains here)."""

from __future__ import annotations

import pytest

from gridpoint.errors import ConfigError, GridpointError
from gridpoint.node.home import NodeHome
from gridpoint.node.study_reports import WarmStartReport
from gridpoint.node.tuning.study_run import TuneRequest, run_tune
from tests.helpers import ROOT, MakeHome

STUDY = ROOT / "examples" / "tiny-study.toml"


class _Heard:
    """The events a run would print, kept."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def warm_start(self, report: WarmStartReport) -> None:
        raise AssertionError("no warm start was asked for")

    def notice(self, line: str) -> None:
        self.notices.append(line)


def test_a_worker_is_warned_in_one_line_on_sqlite_only(make_home: MakeHome, db_url: str) -> None:
    # Prepare: no study started yet, so the worker has nothing to join either way.
    home: NodeHome = make_home("A")
    heard = _Heard()
    # Execute
    with pytest.raises(ConfigError, match="no study 'tiny-sentiment' yet"):
        run_tune(TuneRequest(home, STUDY, db=db_url, worker=True, progress=False), heard)
    # Assert
    if db_url.startswith("sqlite"):
        [warning] = heard.notices
        assert warning.startswith("warning: --worker on SQLite") and "\n" not in warning
    else:
        assert heard.notices == []


@pytest.mark.parametrize(
    ("request_args", "message"),
    [
        ({"trials": 0}, "--trials must be at least 1"),
        ({"prior_filter": "task.language = 'en'"}, "--from selects prior studies"),
        ({"prior_filter": "task.language = ", "warm_start": True}, "filter"),
        ({"devices": "cuda:7", "devices_flag": "--device"}, "--device"),
    ],
)
def test_a_bad_request_is_refused_before_anything_is_stored(
    make_home: MakeHome,
    request_args: dict[str, object],
    message: str,
) -> None:
    home: NodeHome = make_home("A")
    with pytest.raises(GridpointError, match=message):
        run_tune(TuneRequest(home, STUDY, **request_args), _Heard())  # type: ignore[arg-type]
    assert not (home.path / "studies.db").exists()
