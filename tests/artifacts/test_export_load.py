"""An exported model is a plain folder: transformers loads it and predicts as the original."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.store.sql_store import SqlStore
from tests.artifacts.helpers import info
from tests.helpers import MakeHome

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_export_then_from_pretrained_predicts_like_the_original(
    store: SqlStore, make_home: MakeHome, tmp_path: Path
) -> None:
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=3,
    )
    torch.manual_seed(0)
    original = transformers.BertForSequenceClassification(config).eval()
    original.save_pretrained(tmp_path / "trained")
    artifacts = ArtifactStore(make_home("A"), store)
    artifact = artifacts.add(tmp_path / "trained", info(base_model=""))

    out = artifacts.export(artifact.id[:8], tmp_path / "exported")
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()

    inputs = torch.tensor([[2, 5, 9, 11, 3], [2, 7, 7, 1, 3]])
    with torch.no_grad():
        expected = original(input_ids=inputs).logits
        got = loaded(input_ids=inputs).logits
    assert torch.equal(got, expected)
    assert got.argmax(-1).tolist() == expected.argmax(-1).tolist()
