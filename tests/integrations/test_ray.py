"""Ray Tune: a study's trials on a real local Ray cluster, published as `tune`'s; the pruner."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from gridpoint.integrations.foreign_run import ForeignRun, ModelRef
from gridpoint.integrations.ray_pruner import DONE, OBJECTIVE, STEP, PrunerScheduler
from gridpoint.integrations.sink import HomeSink
from gridpoint.integrations.task import declared_task
from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.node.store.query_filter import parse_filter
from gridpoint.node.store.sql_store import open_store
from gridpoint.node.study_reports import load_reports
from gridpoint.schema import CurvePoint, SearchDimension
from gridpoint.trainers.transfer.pruner import CurvePruner
from tests.helpers import MakeHome

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class RayTrial:
    """The part of Ray's Trial a scheduler reads: its id."""

    trial_id: str


def test_the_curve_pruner_stops_through_the_scheduler_a_trial_below_its_priors() -> None:
    prior = [(10, 0.8), (20, 0.9)]
    scheduler = PrunerScheduler(CurvePruner([prior] * 3), "maximize")

    good = scheduler.on_trial_result(None, RayTrial("a"), {OBJECTIVE: 0.85, STEP: 10})
    # The pruner waits for two reports in a row below the priors before it stops a trial.
    poor_once = scheduler.on_trial_result(None, RayTrial("b"), {OBJECTIVE: 0.3, STEP: 10})
    poor_twice = scheduler.on_trial_result(None, RayTrial("b"), {OBJECTIVE: 0.35, STEP: 20})
    unscored = scheduler.on_trial_result(None, RayTrial("c"), {"loss": 1.0})

    assert (good, poor_once, poor_twice, unscored) == (
        TrialScheduler.CONTINUE,
        TrialScheduler.CONTINUE,
        TrialScheduler.STOP,
        TrialScheduler.CONTINUE,
    )


def test_the_study_pruner_learns_from_the_trials_that_finished() -> None:
    scheduler = PrunerScheduler(optuna.pruners.MedianPruner(n_startup_trials=1), "maximize")
    first = RayTrial("a")
    for step, value in ((10, 0.8), (20, 0.9)):
        scheduler.on_trial_result(None, first, {OBJECTIVE: value, STEP: step})
    # The final report repeats the last evaluation's step: it must not count twice.
    last = {OBJECTIVE: 0.9, STEP: 20, DONE: True}
    repeated = scheduler.on_trial_result(None, first, last)
    scheduler.on_trial_complete(None, first, last)

    later = scheduler.on_trial_result(None, RayTrial("b"), {OBJECTIVE: 0.2, STEP: 10})

    assert repeated == TrialScheduler.CONTINUE
    assert later == TrialScheduler.STOP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayCluster:
    address: str
    worker_node: str


@pytest.fixture
def ray_cluster(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RayCluster]:
    """A head (no CPUs: every trial must go to the worker) and one worker process, each a
    `ray start --block` in a session of its own, stopped with its whole process group."""
    import ray

    # Ray reads its authentication mode once per process, when it loads (this one may have
    # already): the cluster of this test, on this machine only, runs without Ray's token
    # (whatever ~/.ray holds), its processes and this driver alike.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's socket paths must stay short: pytest's temporary folders are too deep.
    temp = Path(f"/tmp/gp-ray-{uuid.uuid4().hex[:8]}")
    temp.mkdir()
    logs = tmp_path_factory.mktemp("ray-logs")
    env = dict(os.environ)
    common = ["--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
              "--object-store-memory", str(80 * 2**20), "--dashboard-agent-listen-port", "0",
              "--runtime-env-agent-port", "0", "--metrics-export-port", "0"]  # fmt: skip
    started: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], log: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", *args, *common],
            env=env,
            stdout=(logs / log).open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        return process

    try:
        head = start(
            ["--head", "--port", "0", "--num-cpus", "0", "--temp-dir", str(temp),
             "--include-dashboard", "false", "--dashboard-port", "0",
             "--ray-client-server-port", str(_free_port())],
            "head.log",
        )  # fmt: skip
        current = temp / "ray_current_cluster"
        deadline = time.monotonic() + 90
        while not current.exists():
            assert head.poll() is None, (logs / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not start in 90 s"
            time.sleep(0.2)
        address = current.read_text().strip()
        worker = start(["--address", address, "--num-cpus", "1"], "worker.log")
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        while ray.cluster_resources().get("CPU", 0) < 1:  # type: ignore[no-untyped-call]
            assert worker.poll() is None, (logs / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline + 60, "the Ray worker did not join in time"
            time.sleep(0.2)
        [worker_node] = [n["NodeID"] for n in ray.nodes() if n["Resources"].get("CPU")]  # type: ignore[no-untyped-call]
        yield RayCluster(address, worker_node)
    finally:
        ray.shutdown()
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
        for process in reversed(started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
            # `ray start` leaves daemons in its process group when it stops: end them too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _study_file(folder: Path) -> Path:
    shutil.copy(EXAMPLES / "tiny_pipeline.py", folder / "tiny_pipeline.py")
    text = (EXAMPLES / "tiny-study.toml").read_text()
    text = text.replace(
        'epochs = { type = "int", low = 4, high = 8 }',
        'epochs = { type = "int", low = 1, high = 2 }',
    )
    assert "low = 1, high = 2" in text
    (folder / "study.toml").write_text(text)
    return folder / "study.toml"


PRIOR_BEST = {"learning_rate": 0.003, "batch_size": 32, "warmup_ratio": 0.1, "epochs": 1}


def _plant_prior_study(home: NodeHome) -> None:
    """An earlier study of this node on the same kind of task: the warm start's prior."""
    space = (
        SearchDimension("learning_rate", "float", 1e-4, 5e-3, log=True),
        SearchDimension("batch_size", "categorical", choices=(16, 32)),
        SearchDimension("warmup_ratio", "float", 0.0, 0.2),
        SearchDimension("epochs", "int", 1, 2),
    )
    with HomeSink(home) as sink:
        for i, lr in enumerate((0.0002, 0.0008, PRIOR_BEST["learning_rate"])):
            params = {**PRIOR_BEST, "learning_rate": lr}
            accuracy = 0.6 + 0.1 * i
            sink.add(
                ForeignRun(
                    source_key=f"prior:{i}", study="earlier-study", state="complete",
                    params=dict(params), search_space=space,
                    curve=(CurvePoint(10, "accuracy", accuracy - 0.1),
                           CurvePoint(20, "accuracy", accuracy)),
                    metrics={"accuracy": accuracy}, objective_metric="accuracy",
                    objective_direction="maximize", number=i,
                ),
                declared_task("text-classification", train_size=200, language="en", num_labels=2),
                ModelRef(family="bert"),
            )  # fmt: skip


@pytest.mark.slow
def test_a_warm_started_study_runs_on_the_cluster_workers_and_publishes_like_tune(
    ray_cluster: RayCluster, make_home: MakeHome, tmp_path: Path
) -> None:
    from gridpoint.integrations.ray import run_study

    home = make_home("A")
    _plant_prior_study(home)
    study = _study_file(tmp_path)

    summary = run_study(study, home=home, trials=2, max_concurrent=1, warm_start=True)

    store = open_store(home.db_url())
    try:
        records = store.query(
            parse_filter(f"study = '{pseudonym(home.secret, 'study', 'tiny-sentiment')}'"),
            limit=100,
        )
        private = sorted(store.list_private_runs("tiny-sentiment"), key=lambda p: p.trial_number)
    finally:
        store.close()
    assert [t.number for t in summary.trials] == [0, 1]
    assert {t.state for t in summary.trials} <= {"complete", "pruned"}
    assert summary.warm_start is not None
    assert summary.warm_start.priors[0].used and summary.warm_start.priors[0].trials == 3
    # The report is kept beside the study for the UI, as `tune --warm-start` keeps it.
    assert load_reports(home.path, "tiny-sentiment")[-1].priors == summary.warm_start.priors
    assert {r.id for r in records} == {t.record_id for t in summary.trials}
    for stored in records:
        record = stored.record
        assert record.kind == "trial" and record.objective_metric == "accuracy"
        assert record.status in {"complete", "pruned"}
        assert record.model.family == "bert" and record.curve
        # Private names and where the trial ran stay in the private record.
        for private_text in (b"tiny-sentiment", b"tiny_pipeline", ray_cluster.worker_node.encode()):
            assert private_text not in stored.envelope
    assert [p.trial_number for p in private] == [0, 1]
    # The private run is tune's: every parameter (fixed ones too), the study file, the pipeline.
    assert all(p.detail.params["weight_decay"] is not None for p in private)
    assert {p.detail.pipeline for p in private} == {"tiny_pipeline:load"}
    # The warm start's first proposal is the prior's best configuration.
    first = private[0].detail.params
    assert {k: float(first[k]) for k in PRIOR_BEST} == pytest.approx(PRIOR_BEST)
    # The head has no CPU: every trial ran on the worker process's node.
    assert {p.detail.extra["ray_node"] for p in private} == {ray_cluster.worker_node}
    # The curve pruner may stop either trial (the priors' curves are steep): the best is
    # among those that finished, and there is none when none did.
    finished = {t.number for t in summary.trials if t.state == "complete"}
    assert (summary.best[0] if summary.best else -1) in (finished or {-1})
    complete = [p.detail for p in private if p.detail.state == "complete"]
    assert all(d.model.num_parameters > 0 and d.samples_per_second for d in complete)


@dataclass
class ErroredTrial:
    """The part of Ray's Trial the publisher reads when a trial errs, with the error Ray keeps."""

    trial_id: str
    config: dict[str, float]
    error: BaseException | None
    last_result: dict[str, object] = field(default_factory=dict)

    def get_pickled_error(self) -> BaseException | None:
        return self.error


def test_a_failed_trial_is_published_as_tune_publishes_it(
    make_home: MakeHome, tmp_path: Path
) -> None:
    from ray.exceptions import RayTaskError

    from gridpoint.integrations.ray import _Publisher
    from gridpoint.integrations.ray_trial import TrialFailed
    from gridpoint.node.publishing.service import PublishingService
    from gridpoint.node.store.base import ModelRef
    from gridpoint.trainers.study_config import load_study_config

    home = make_home("A")
    config = load_study_config(_study_file(tmp_path))
    task = declared_task("text-classification", train_size=200, language="en", num_labels=2)
    params = {"learning_rate": 0.004, "batch_size": 16, "warmup_ratio": 0.1, "epochs": 1}
    # As Ray hands it back: the worker's exception wrapped in a RayTaskError.
    diverged = RayTaskError(  # type: ignore[no-untyped-call]
        "_train", "Traceback ...", TrialFailed("TrainingDiverged: loss is nan", "diverged")
    ).as_instanceof_cause()
    store = open_store(home.db_url())
    try:
        publisher = _Publisher(PublishingService(home, store), config, task,
                               ModelRef(family="bert"), run_id="r1", first=0)  # fmt: skip
        publisher.on_trial_error(0, [], ErroredTrial("t0", params, diverged))
        # A failure that says nothing about the hyperparameters (a bug, a dead process).
        publisher.on_trial_error(0, [], ErroredTrial("t1", params, KeyError("labels")))
        publisher.on_trial_error(0, [], ErroredTrial("t2", params, None))
        records = store.query(None, limit=10)
        private = sorted(store.list_private_runs("tiny-sentiment"), key=lambda p: p.trial_number)
    finally:
        store.close()

    assert [(t.number, t.state) for t in publisher.trials] == [(0, "failed"), (1, "failed"),
                                                                (2, "failed")]  # fmt: skip
    [record] = [r.record for r in records]
    assert record.status == "failed" and record.failure == "diverged"
    assert publisher.trials[0].record_id == records[0].id
    assert [t.record_id for t in publisher.trials[1:]] == [None, None]
    assert [p.detail.error for p in private] == [
        "TrainingDiverged: loss is nan",
        "KeyError: 'labels'",
        "the Ray trial failed with no error kept",
    ]
    assert [p.record_id for p in private] == [records[0].id, None, None]
