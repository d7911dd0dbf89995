"""The tune service's own rules, called in-process (no study trains here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpoint.errors import ConfigError, GridpointError
from gridpoint.integrations.foreign_run import ForeignRun, ModelRef
from gridpoint.integrations.sink import HomeSink
from gridpoint.integrations.task import declared_task
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


class _Stop(Exception):
    """Stops the run at its prior report: the test needs no trial."""


class _Reported(_Heard):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[WarmStartReport] = []

    def warm_start(self, report: WarmStartReport) -> None:
        self.reports.append(report)
        raise _Stop


def test_a_lora_study_warm_starts_from_a_lora_prior_and_leaves_a_full_one_out(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: two earlier studies of this node on the tiny study's task, one fine-tuned with
    # LoRA and one in full; the tiny study itself, with LoRA.
    home: NodeHome = make_home("A")
    task = declared_task("text-classification", train_size=200, language="en", num_labels=2)
    with HomeSink(home) as sink:
        for lora in (True, False):
            for i in range(3):
                sink.add(
                    ForeignRun(
                        source_key=f"{lora}:{i}", study=f"earlier-{lora}", state="complete",
                        params={"learning_rate": 1e-3 * (i + 1), "batch_size": 16},
                        metrics={"accuracy": 0.6 + i / 10}, objective_metric="accuracy",
                        objective_direction="maximize", number=i,
                    ),
                    task,
                    ModelRef(family="bert", lora=lora),
                )  # fmt: skip
    (tmp_path / "tiny_pipeline.py").write_text((ROOT / "examples" / "tiny_pipeline.py").read_text())
    study = tmp_path / "study.toml"
    study.write_text(STUDY.read_text().replace("[model]\n", "[model]\nlora = true\n"))
    heard = _Reported()
    # Execute
    with pytest.raises(_Stop):
        run_tune(TuneRequest(home, study, warm_start=True, progress=False), heard)
    # Assert: the LoRA prior is used; the full one is left out, saying why.
    [report] = heard.reports
    used = [row for row in report.priors if row.used]
    left = [row for row in report.priors if not row.used]
    assert len(used) == 1 and len(left) == 1, report.priors
    assert left[0].reason == "fine-tuned 'full', this study 'lora'"
