"""`tune` in privacy mode, end to end: DP-SGD trials on CPU, released values, the ledger.

A tiny real text-classification task (a model built from a config, data made by the
pipeline) runs as a private study through the command line, in this process
(tests/cli_main.py): its records carry the signed guarantee, filterable; only released
accuracy leaves; the pipeline's ledger holds the study before its first trial; a study past
the pipeline's budget is refused before any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridpoint.node.home import NodeHome
from tests.cli_main import run_main
from tests.helpers import MakeHome

pytestmark = pytest.mark.slow

PIPELINE = """
import random

def _split(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        words = rng.choices("the a movie was really quite it".split(), k=5)
        words.insert(rng.randrange(6), rng.choice(["great", "lovely"] if good else ["awful", "bad"]))
        rows.append((" ".join(words), "pos" if good else "neg"))
    return rows

def load():
    return _split(160, 1), _split(60, 2)
"""

STUDY = """
pipeline = "reviews:load"
name = "private-reviews"
task = "text-classification"
language = "en"
trials = 2

[model]
max_length = 16
config = { model_type = "bert", hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 32, max_position_embeddings = 32, vocab_size = 100 }

[training]
eval_interval = 5

[search_space]
learning_rate = { type = "float", low = 5e-3, high = 2e-2, log = true }

[pruner]
type = "none"
"""

PRIVACY = """
[privacy]
epsilon = 8.0
delta = 1e-5
protect = "both"
"""


def _study(folder: Path, extra: str = PRIVACY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reviews.py").write_text(PIPELINE)
    path = folder / "study.toml"
    path.write_text(STUDY + extra)
    return path


def _set_budget(home: NodeHome, budget: float) -> None:
    text = home.config_path.read_text().replace(
        "budget_epsilon = 0.0", f"budget_epsilon = {budget}"
    )
    home.config_path.write_text(text)


def test_a_private_study_publishes_its_guarantee_and_only_released_values(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    a = make_home("A")

    def run_json(*args: str) -> Any:
        return run_main(capsys, *args, "--json", home=a.path).json()

    _set_budget(a, 12.0)
    study = _study(tmp_path / "study")
    # Execute
    tuned = run_json("tune", str(study))
    records = run_json("catalog", "query", "privacy.epsilon <= 8")
    stricter = run_json("catalog", "query", "privacy.epsilon <= 4")
    shown = run_json("catalog", "show", records[0]["id"])
    ledger = run_json("privacy", "ledger")
    # Assert: two DP-SGD trials ran on the CPU and were published with their guarantee.
    assert [t["state"] for t in tuned["trials"]] == ["complete", "complete"]
    assert {t["device"] for t in tuned["trials"]} == {"cpu"}
    assert tuned["privacy"]["epsilon"] == 8.0 and 0 < tuned["privacy"]["spent_epsilon"] <= 8.0
    assert len(records) == 2 and stricter == []
    assert shown["privacy"] == {
        "epsilon": 8.0,
        "delta": 1e-5,
        "protected": "both",
        "accountant": "rdp",
    }
    # Only released accuracy leaves: no loss, no F1 (no known sensitivity), no train loss.
    assert {p["metric"] for p in shown["curve"]} == {"accuracy"}
    assert set(shown["metrics"]) == {"accuracy"}
    # The ledger charged the study to its pipeline and settled it to what it spent.
    [release] = ledger["releases"]
    [total] = ledger["totals"]
    assert release["state"] == "settled" and release["protected"] == "both"
    assert release["epsilon"] == pytest.approx(tuned["privacy"]["spent_epsilon"])
    assert total["releases"] == 1 and total["budget_epsilon"] == 12.0
    # Pipelines and studies appear as pseudonyms only.
    assert "reviews" not in str(ledger) and "private-reviews" not in str(ledger)
    # A second study of the same pipeline would pass the budget: refused before any trial.
    again = run_main(capsys, "tune", str(study), "--trials", "1", home=a.path)
    assert again.returncode == 1
    assert "privacy budget" in again.stderr and "12" in again.stderr
    assert len(run_json("catalog", "query")) == 2
    assert len(run_json("privacy", "ledger")["releases"]) == 1


def test_the_node_default_makes_a_study_private_unless_its_file_says_otherwise(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: privacy on by default, evaluation rows protected only (exact training).
    a = make_home("A")

    def run_json(*args: str) -> Any:
        return run_main(capsys, *args, "--json", home=a.path).json()

    text = a.config_path.read_text()
    text = text.replace("enabled = false", "enabled = true").replace(
        'protect = "both"', 'protect = "evaluation"'
    )
    a.config_path.write_text(text)
    private = _study(tmp_path / "default", extra="")
    exact = _study(tmp_path / "exact", extra="[privacy]\nenabled = false\n")
    # Execute
    run_json("tune", str(private), "--trials", "1")
    run_json("tune", str(exact), "--trials", "1")
    records = run_json("catalog", "query")
    # Assert: one record carries the node's default, the other none (exact values).
    shown = [run_json("catalog", "show", r["id"]) for r in records]
    guarantees = sorted(str(s.get("privacy")) for s in shown)
    assert guarantees[0] == "None"
    assert "'protected': 'evaluation'" in guarantees[1]
    by_privacy = {s.get("privacy") is not None: s for s in shown}
    # Exact training is not protected: its loss may leave; evaluation values are noised.
    assert {p["metric"] for p in by_privacy[True]["curve"]} == {"accuracy", "train_loss"}
    assert {p["metric"] for p in by_privacy[False]["curve"]} >= {"accuracy", "eval_loss", "f1"}
