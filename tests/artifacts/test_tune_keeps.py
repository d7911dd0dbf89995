"""`gridpoint tune` keeps its best model: it loads with plain transformers, scores like its
record, and a new study can start from it (its records then name the model's record)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.cli_main import run_main
from tests.helpers import ROOT
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
        # A later study in this process imports its own tiny_pipeline, from its own folder.
        sys.modules.pop("tiny_pipeline", None)
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


def test_tune_keeps_its_best_model_and_a_new_study_starts_from_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare: the tiny study, keeping its best model.
    home = tmp_path / "node"
    shutil.copy(ROOT / "examples" / "tiny_pipeline.py", tmp_path)
    (tmp_path / "study.toml").write_text(STUDY + "\n[output]\nkeep = 1\n")
    run_main(capsys, "init", "--name", "A", "--json", home=home).json()
    # Execute
    first = run_main(
        capsys, "tune", str(tmp_path / "study.toml"), "--trials", "2", "--json", home=home
    ).json()
    [kept] = run_main(capsys, "model", "list", "--json", home=home).json()
    shown = run_main(capsys, "model", "show", kept["id"][:8], "--json", home=home).json()
    run_main(
        capsys, "model", "export", kept["id"][:8], str(tmp_path / "exported"), "--json", home=home
    ).json()
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
    second = run_main(
        capsys, "tune", str(tmp_path / "from-kept.toml"), "--trials", "1", "--json", home=home
    ).json()
    [record] = run_main(
        capsys,
        "catalog",
        "query",
        f"id = '{second['trials'][0]['record_id']}'",
        "--json",
        home=home,
    ).json()
    # Assert: its record names the kept model's record as its parent.
    assert record["parents"] == [kept["record"]]
