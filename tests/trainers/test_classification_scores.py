"""The classification scores are sklearn's: accuracy and macro F1 over the labels in eval."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score

from gridpoint.trainers.tasks.classification import ClassificationScorer

LABELS = 6


def _score(golds: list[int], preds: list[int], batch: int) -> dict[str, float]:
    """Scores golds/preds fed in batches of `batch`, as an evaluation loop feeds them."""
    scorer = ClassificationScorer()
    for start in range(0, len(golds), batch):
        gold = torch.tensor(golds[start : start + batch])
        logits = torch.nn.functional.one_hot(torch.tensor(preds[start : start + batch]), LABELS)
        scorer.add({"labels": gold}, 0.5, logits.float())
    return scorer.result()


def test_a_label_predicted_but_never_true_counts_against_the_others_only() -> None:
    # Label 0: 1 of 2 found, 1 wrongly given; label 1: 2 found, 1 wrongly given; label 2: 0
    # found. Label 3 was predicted once but is in no example: not a term of the mean.
    scores = _score([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 3], batch=4)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["f1"] == pytest.approx((2 / 4 + 4 / 5 + 0) / 3)
    assert scores["eval_loss"] == pytest.approx(0.5)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, LABELS - 1), st.integers(0, LABELS - 1)), min_size=1, max_size=60
    ),
    batch=st.integers(1, 16),
)
def test_scores_equal_sklearns_for_any_labels_and_batching(
    pairs: list[tuple[int, int]], batch: int
) -> None:
    golds = [g for g, _ in pairs]
    preds = [p for _, p in pairs]
    scores = _score(golds, preds, batch)
    assert scores["accuracy"] == pytest.approx(accuracy_score(golds, preds), abs=1e-12)
    expected = f1_score(golds, preds, labels=sorted(set(golds)), average="macro", zero_division=0)
    assert scores["f1"] == pytest.approx(expected, abs=1e-12)
