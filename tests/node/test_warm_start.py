"""`tune --warm-start`: node A tunes, B syncs A's catalog from A's daemon and tunes from it.

The daemons are real processes; the commands run in this process (tests/cli_main.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gridpoint.node.home import NodeHome
from tests.cli_main import run_main
from tests.helpers import Daemon, MakeHome, trust

pytestmark = pytest.mark.slow

PIPELINE = """
import random


CUES = {0: ["good", "great", "fine"], 1: ["bad", "poor", "awful"], 2: ["blue", "red", "green"]}
FILLER = ["the", "a", "this", "it", "was", "very", "quite", "day", "item", "order"]


def _make(n, seed, labels, length):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(FILLER, k=length)
        words.insert(rng.randrange(len(words)), rng.choice(CUES[i % labels]))
        rows.append((" ".join(words), f"class{i % labels}"))
    return rows


def related():
    return _make(1200, 1, 2, 6), _make(200, 2, 2, 6)


def unrelated():
    return _make(320, 3, 3, 40), _make(80, 4, 3, 40)
"""

SPACE = """learning_rate = { type = "float", low = 1e-5, high = 5e-3, log = true }
batch_size = { type = "categorical", choices = [16, 32] }
warmup_ratio = { type = "float", low = 0.0, high = 0.2 }"""
# Nothing in it fits SPACE: a range that does not overlap, choices it does not offer.
MISMATCHED_SPACE = """learning_rate = { type = "float", low = 1e-2, high = 5e-2, log = true }
batch_size = { type = "categorical", choices = [64, 128] }"""


def run_json(capsys: pytest.CaptureFixture[str], home: NodeHome, *args: str) -> Any:
    return run_main(capsys, *args, "--json", home=home.path).json()


def write_study(folder: Path, name: str, *, load: str, language: str, seed: int, space: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task_pipeline.py").write_text(PIPELINE)
    path = folder / f"{name}.toml"
    path.write_text(f"""pipeline = "task_pipeline:{load}"
name = "{name}"
task = "text-classification"
language = "{language}"
seed = {seed}

[model]
max_length = 64
config = {{ model_type = "bert", hidden_size = 32, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 64, max_position_embeddings = 64, vocab_size = 200 }}

[objective]
metric = "accuracy"
direction = "maximize"

[training]
eval_interval = 25

[search_space]
{space}

[pruner]
type = "none"
""")
    return str(path)


def test_warm_start_uses_a_peers_study_weighs_an_unrelated_one_low_and_reports_a_misfit(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon], tmp_path: Path
) -> None:
    # Prepare: A and B trust each other; A tunes a related, an unrelated and a misfit study.
    a: NodeHome = make_home("OrgA")
    b: NodeHome = make_home("OrgB")
    da, db = Daemon.start(a), Daemon.start(b)
    daemons += [da, db]
    trust(a, b, db.address)
    trust(b, a, da.address)
    studies = tmp_path / "studies"
    t1 = write_study(studies, "t1", load="related", language="en", seed=0, space=SPACE)
    unrelated = write_study(studies, "u1", load="unrelated", language="de", seed=7, space=SPACE)
    misfit = write_study(
        studies, "m1", load="related", language="en", seed=3, space=MISMATCHED_SPACE
    )
    t2 = write_study(studies, "t2", load="related", language="en", seed=1, space=SPACE)
    t3 = write_study(studies, "t3", load="related", language="en", seed=2, space=SPACE)
    a_t1 = run_json(capsys, a, "tune", t1, "--trials", "3")
    run_json(capsys, a, "tune", unrelated, "--trials", "3")
    run_json(capsys, a, "tune", misfit, "--trials", "2")
    run_json(capsys, b, "catalog", "sync")
    [u_row, *_] = run_json(capsys, b, "catalog", "query", "task.language = 'de'")

    # Execute
    warm = run_json(capsys, b, "tune", t2, "--trials", "2", "--warm-start")
    lone = run_json(
        capsys,
        b,
        "tune",
        t3,
        "--trials",
        "1",
        "--warm-start",
        "--from",
        f"study = '{u_row['study']}'",
    )

    # Assert: all three of A's studies are in the report, signed by A.
    rows = warm["warm_start"]["priors"]
    assert len(rows) == 3 and {r["signer"] for r in rows} == {a.identity.node_id}
    [related] = [r for r in rows if r["used"] and r["similarity"] == 1.0]
    [lowly] = [r for r in rows if r["used"] and r["study"] == u_row["study"]]
    [left_out] = [r for r in rows if not r["used"]]
    assert related["trials"] == 3 and related["weight"] >= 0.3
    # How each dimension was matched is kept in the report (same names here).
    assert [(d["dimension"], d["prior"], d["how"]) for d in related["dimensions"]] == [
        ("learning_rate", "learning_rate", "same name"),
        ("batch_size", "batch_size", "same name"),
        ("warmup_ratio", "warmup_ratio", "same name"),
    ]
    assert lowly["trials"] == 3 and lowly["weight"] < 0.1
    assert "learning_rate" in left_out["reason"] and "does not overlap" in left_out["reason"]
    # The first trial is one of A's related configurations, not a fresh guess.
    a_configs = [t["params"] for t in a_t1["trials"]]
    assert warm["trials"][0]["params"] in a_configs
    # With only the unrelated study to go on, it still weighs little.
    [only] = lone["warm_start"]["priors"]
    assert only["study"] == u_row["study"] and only["weight"] < 0.1
    assert lone["warm_start"]["study_weight"] > 0.9
