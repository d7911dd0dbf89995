"""`gridpoint tune` keeps its best model: it loads with plain transformers, scores like its
record, and a new study can start from it (its records then name the model's record)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_json
from tests.tasks.studies import FAST_EXAMPLE

pytestmark = pytest.mark.slow

STUDY = FAST_EXAMPLE


def _accuracy(folder: Path, pipeline_dir: Path) -> float:
    """The exported model's accuracy on the tiny pipeline's eval split, plain transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    sys.path.insert(0, str(pipeline_dir))
    try:
        from tiny_pipeline import load  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(pipeline_dir))
    _train, evaluation = load()
    texts, labels = [t for t, _ in evaluation], [y for _, y in evaluation]
    names = sorted(set(labels))
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=96, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    right: int = sum(names[p] == y for p, y in zip(predicted, labels, strict=True))
    return right / len(labels)


def test_tune_keeps_its_best_model_and_a_new_study_starts_from_it(tmp_path: Path) -> None:
    # Prepare: the tiny study, keeping its best model.
    home = tmp_path / "node"
    shutil.copy(ROOT / "examples" / "tiny_pipeline.py", tmp_path)
    (tmp_path / "study.toml").write_text(STUDY + "\n[output]\nkeep = 1\n")
    cli_json("init", "--name", "A", home=home)
    # Execute
    first = cli_json("tune", str(tmp_path / "study.toml"), "--trials", "2", home=home, timeout=600)
    [kept] = cli_json("model", "list", home=home)
    shown = cli_json("model", "show", kept["id"][:8], home=home)
    cli_json("model", "export", kept["id"][:8], str(tmp_path / "exported"), home=home)
    # Assert: the best complete trial's model, linked to its record, scoring like it.
    complete = [t for t in first["trials"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["metrics"]["accuracy"])
    assert kept["record"] == best["record_id"] and kept["kind"] == "trial"
    assert kept["score"] == best["metrics"]["accuracy"]
    assert {f["path"] for f in shown["files"]} >= {"config.json", "model.safetensors"}
    assert shown["lineage"] == [best["record_id"]]
    assert _accuracy(tmp_path / "exported", tmp_path) == best["metrics"]["accuracy"]

    # Execute: a second study fine-tunes further from the kept model.
    start = STUDY.replace('name = "tiny-sentiment"', 'name = "tiny-from-kept"')
    start = start.replace("config = {", f'artifact = "{kept["id"][:10]}"\n# config = {{', 1)
    (tmp_path / "from-kept.toml").write_text(start)
    second = cli_json(
        "tune", str(tmp_path / "from-kept.toml"), "--trials", "1", home=home, timeout=600
    )
    [record] = cli_json("catalog", "query", f"id = '{second['trials'][0]['record_id']}'", home=home)
    # Assert: its record names the kept model's record as its parent.
    assert record["parents"] == [kept["record"]]
