"""The UI's test world: a node (Beta) that synced a peer's (Alpha's) records, has studies of its
own (a cold one, one warm-started from Alpha's study, one with malformed rows), models kept
from its runs (a trial's, a federation's, one derived from that), and a hosted federation's
journal, served by a real `gridpoint ui` process; one Chromium (Debian's, driven by
Playwright) for the whole session. Each xdist worker that runs a UI test builds its own world
(about 3.5 s of CPU more with two than with one, measured; an `xdist_group` would not keep them
on one worker under pytest 9.2, pytest-dev/pytest-xdist#1386).

Screenshots go to gridpoint-test-artifacts/ui/ under the system's temporary folder, never into
the checkout; `GRIDPOINT_SCREENSHOTS=docs/screenshots` copies the README's there too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gridpoint.node.artifacts.store import ArtifactStore, NewArtifact
from gridpoint.node.catalog import publish
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.sync import sync_all
from gridpoint.node.store.base import PrivateRun, RunDetail
from gridpoint.node.study_reports import DimensionRow, PriorRow, WarmStartReport, save_report
from gridpoint.schema import CurvePoint, RunRecord
from tests.helpers import ROOT, make_record
from tests.inprocess import Network

ARTIFACTS = Path(tempfile.gettempdir()) / "gridpoint-test-artifacts" / "ui"
#: Where the README's screenshots are refreshed, when asked (tests never write the checkout).
SCREENSHOTS = os.environ.get("GRIDPOINT_SCREENSHOTS", "")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Text only this node knows about its own runs; it must never appear on a peer's record page.
PRIVATE_CANARY = "canary-private-study-7f3a"
#: Alpha's study, as its records name it (a pseudonym): the warm-started study's prior.
ALPHA_STUDY = "ab" * 16
#: A study with a row Optuna's reader chokes on and a parameter named like a formula.
EDGE_STUDY = "edge-cases"
DOLLAR_PARAM = "$\\beta_1$"


@dataclass
class World:
    alpha: NodeHome
    beta: NodeHome
    alpha_ids: list[str]
    beta_ids: list[str]
    long_curve_id: str
    records: dict[str, RunRecord]
    #: Beta's models: a trial's, the federation's started from it, one derived from that.
    models: list[str]
    federated_id: str
    derived_id: str


def _curved(i: int, accuracy: float, points: int, lr: float) -> RunRecord:
    base = replace(make_record(i, accuracy=accuracy, learning_rate=lr), study=ALPHA_STUDY)
    curve = tuple(
        CurvePoint(10 * (k + 1), "accuracy", round(accuracy * (k + 1) / points + 0.01 * (k % 3), 4))
        for k in range(points)
    )
    return replace(base, curve=curve, objective_metric="accuracy", objective_direction="maximize")


def _studies(home: NodeHome, first: RunRecord, alpha_id: str) -> None:
    """Studies as `tune` keeps them: a cold one, a warm-started one (its first trial runs the
    configuration of Alpha's record `first`) with its report, and one with malformed rows."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{home.path / 'studies.db'}"
    cold = [0.55, 0.61, 0.58, 0.66, 0.64, 0.69, 0.7, 0.68]
    warm = [0.71, 0.69, 0.74, 0.73, 0.76, 0.75, 0.77, 0.76]
    for name, values in (("sentiment-cold", cold), ("sentiment-warm", warm)):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.RandomSampler(seed=len(name)),
        )
        if name == "sentiment-warm":
            study.enqueue_trial(dict(first.hyperparameters))
        for k, value in enumerate(values):
            trial = study.ask()
            trial.suggest_float("learning_rate", 1e-6, 1e-3, log=True)
            trial.suggest_int("batch_size", 16, 48)
            trial.suggest_categorical("optimizer", ["adamw", "sgd"])
            for step in range(1, 6):
                trial.report(value * step / 5 - 0.01 * (step % 2), step * 10)
            if k == 3:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
    save_report(
        home.path,
        "sentiment-warm",
        WarmStartReport(
            method="rgpe",
            priors=(
                PriorRow(
                    "p1",
                    ALPHA_STUDY,
                    alpha_id,
                    "Alpha Labs",
                    6,
                    True,
                    0.91,
                    0.5,
                    dimensions=(
                        DimensionRow("learning_rate", "lr", "normalized name"),
                        DimensionRow("batch_size", "batch_size", "same name"),
                        DimensionRow("optimizer", "", "missing", "no parameter of that name"),
                    ),
                    values_clipped=2,
                ),
                PriorRow(
                    "p2", "cd" * 16, "b" * 40, "Gamma", 3, False, reason="another model family"
                ),
            ),
            weights={"p1": 0.62},
            study_weight=0.38,
            prior_curves=6,
            saved_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
    )
    edge = optuna.create_study(study_name=EDGE_STUDY, storage=storage, direction="minimize")
    for value in (0.5, 0.4, 0.45, 0.3):
        trial = edge.ask()
        trial.suggest_float(DOLLAR_PARAM, 0.0, 1.0)
        trial.suggest_categorical("optimizer", ["adamw", "sgd"])
        edge.tell(trial, value)
    # A categorical index that is NaN (trial 1) and a distribution that is not an object
    # (trial 2): rows a broken writer could leave.
    with sqlite3.connect(home.path / "studies.db") as db:
        db.execute(
            "UPDATE trial_params SET param_value = ? WHERE param_name = 'optimizer'"
            " AND trial_id = (SELECT trial_id FROM trials t JOIN studies s USING (study_id)"
            " WHERE s.study_name = ? AND t.number = 1)",
            (float("nan"), EDGE_STUDY),
        )
        db.execute(
            "UPDATE trial_params SET distribution_json = '[1, 2]' WHERE param_name = ?"
            " AND trial_id = (SELECT trial_id FROM trials t JOIN studies s USING (study_id)"
            " WHERE s.study_name = ? AND t.number = 2)",
            (DOLLAR_PARAM, EDGE_STUDY),
        )


def _models(
    beta: NodeHome, store: Any, trial_id: str, reader: str, records: dict[str, RunRecord]
) -> tuple[list[str], str, str]:
    """A trial's kept model, a federation started from that trial (its record and global
    model) and a trial derived from the federation's model: lineage over four generations."""
    folder = Path(tempfile.mkdtemp(prefix="gridpoint-ui-model-"))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_labels": 2}))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    artifacts = ArtifactStore(beta, store)
    models = [
        artifacts.add(
            folder,
            NewArtifact("trial", trial_id, "", "full", "sentiment-warm", 0.74, readers=(reader,)),
        ).id
    ]
    federated = replace(
        _curved(30, 0.78, 3, 3e-5),
        kind="federated",
        study="",
        members=(beta.identity.node_id, reader),
        parents=(trial_id,),
    )
    federated_id = publish(store, beta.identity, federated).id
    records[federated_id] = federated
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 65)
    models.append(
        artifacts.add(
            folder,
            NewArtifact("federated", federated_id, "", "full", "sentiment", readers=(reader,)),
        ).id
    )
    derived = replace(_curved(31, 0.8, 4, 4e-5), study="", parents=(federated_id,))
    derived_id = publish(store, beta.identity, derived).id
    records[derived_id] = derived
    shutil.rmtree(folder)
    return models, federated_id, derived_id


def _federation(home: NodeHome, members: list[str]) -> None:
    """A hosted federation's journal, in the format the ServerApp writes it."""
    folder = home.path / "fed" / "sentiment" / "run-001"
    folder.mkdir(parents=True)
    events = [{"event": "start", "rounds": 3, "payload_bytes": 1000, "parameters": 250}]
    for r in range(1, 4):
        events.append(
            {
                "event": "round",
                "round": r,
                "accepted": members,
                "refused": [{"node": "flower-node-99", "reason": "update is not signed"}]
                if r == 2
                else [],
                "metrics": {"train_loss": 1.0 / r, "accuracy": 0.5 + r / 10},
                "member_metrics": {
                    m: {"train_loss": 1.0 / r + 0.1 * i, "accuracy": 0.45 + r / 10 + 0.1 * i}
                    for i, m in enumerate(members)
                },
                "payload_bytes": [1000] * len(members),
            }
        )
    (folder / "progress.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "result.json").write_text(json.dumps({"members": members, "train_metrics": {}}))


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="gridpoint-ui-"))
    net = Network(root)
    alpha, beta = net.add("Alpha Labs"), net.add("Beta Research")
    net.trust(alpha, beta)
    net.trust(beta, alpha)
    records: dict[str, RunRecord] = {}
    alpha_ids = []
    for i in range(6):
        record = _curved(i, 0.6 + i / 20, 20, 1e-5 * (i + 1))
        alpha_ids.append(publish(alpha.store, alpha.home.identity, record).id)
        records[alpha_ids[-1]] = record
    long_record = _curved(99, 0.9, 1000, 5e-5)
    long_curve_id = publish(alpha.store, alpha.home.identity, long_record).id
    records[long_curve_id] = long_record
    alpha_ids.append(long_curve_id)
    sync_all(beta.home, beta.store, net.connector(beta))
    beta_ids = []
    for i in range(3):
        record = _curved(10 + i, 0.7 + i / 50, 15, 2e-5 * (i + 1))
        beta_ids.append(publish(beta.store, beta.home.identity, record).id)
        records[beta_ids[-1]] = record
    # A run derived from one of the peer's (its lineage) and one from a record never seen here.
    child = replace(_curved(20, 0.8, 5, 3e-5), parents=(alpha_ids[1], "f" * 64))
    beta_ids.append(publish(beta.store, beta.home.identity, child).id)
    records[beta_ids[-1]] = child
    beta.store.add_run(PrivateRun(PRIVATE_CANARY, 0, RunDetail("complete"), beta_ids[0]))
    # A private run that (wrongly) names a peer's record: the page of that record must still
    # show nothing private, because the record is not this node's.
    beta.store.add_run(
        PrivateRun(PRIVATE_CANARY, 1, RunDetail("failed", error="canary-error"), alpha_ids[0])
    )
    beta.store.add_run(PrivateRun("sentiment-warm", 0, RunDetail("complete"), beta_ids[0]))
    _studies(beta.home, records[alpha_ids[1]], alpha.node_id)
    models, federated_id, derived_id = _models(
        beta.home, beta.store, beta_ids[0], alpha.node_id, records
    )
    _federation(beta.home, [alpha.node_id, beta.node_id])
    world = World(
        alpha.home,
        beta.home,
        alpha_ids,
        beta_ids,
        long_curve_id,
        records,
        models,
        federated_id,
        derived_id,
    )
    net.close()
    yield world
    shutil.rmtree(root, ignore_errors=True)


class UiProcess:
    """A real `gridpoint ui` process; url is what it printed."""

    def __init__(self, home: NodeHome, listen: str = "127.0.0.1:0") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gridpoint", "--home", str(home.path), "ui", "--listen", listen],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if match is None:
            self.stop()
            raise AssertionError(f"gridpoint ui did not start: {line}")
        self.url = match.group(1)
        self.port = int(re.search(r":(\d+)/", self.url).group(1))  # type: ignore[union-attr]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def ui(world: World) -> Iterator[UiProcess]:
    process = UiProcess(world.beta)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip("no chromium (apt-get install chromium; ./dev test installs it)")
    user_data = Path(tempfile.mkdtemp(prefix="gridpoint-chromium-"))
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(10_000)
        yield context
        context.close()
    shutil.rmtree(user_data, ignore_errors=True)


@pytest.fixture
def page(browser: Any, ui: UiProcess) -> Iterator[Any]:
    """A fresh tab that records every request it makes (page.requests) and every script
    error (page.errors)."""
    tab = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.on("pageerror", lambda error: errors.append(str(error)))
    # An error status is the page's own answer (a bad filter is a 400 page); a script that
    # throws or logs an error is not.
    tab.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.requests = requests
    tab.errors = errors
    yield tab
    tab.close()


def shot(page: Any, name: str, *, readme: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme:
        for_readme(path)
    return path


def for_readme(picture: Path) -> None:
    """Copies a picture the README shows to GRIDPOINT_SCREENSHOTS, when that is set."""
    if SCREENSHOTS:
        folder = Path(SCREENSHOTS)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, folder / picture.name)
