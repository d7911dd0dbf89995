"""`tune` of a study with `[training] trainable = "head"`: its records say the head trained.

One tiny trial through the command line, in this process (tests/cli_main.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_main import run_main
from tests.federation.test_head_only import PIPELINE  # the same tiny reviews
from tests.helpers import MakeHome

pytestmark = pytest.mark.slow

STUDY = """
pipeline = "reviews:load"
name = "head-reviews"
task = "text-classification"
trials = 1

[model]
max_length = 16
config = { model_type = "bert", hidden_size = 16, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 32, max_position_embeddings = 32, vocab_size = 100 }

[training]
trainable = "head"

[search_space]
learning_rate = { type = "float", low = 1e-3, high = 1e-1, log = true }

[pruner]
type = "none"
"""


def test_a_head_only_study_publishes_its_trials_as_method_head(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare
    home = make_home("A")
    (tmp_path / "reviews.py").write_text(PIPELINE)
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    # Execute
    tuned = run_main(capsys, "tune", str(study), "--json", home=home.path).json()
    heads = run_main(
        capsys, "catalog", "query", "model.method = 'head'", "--json", home=home.path
    ).json()
    # Assert: the one trial is published, and says that only the head trained.
    [trial] = tuned["trials"]
    assert trial["state"] == "complete" and [r["id"] for r in heads] == [trial["record_id"]]
