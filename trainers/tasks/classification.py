"""Scoring one label per example (texts, images): accuracy, macro F1 and mean eval loss."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gridpoint.trainers.tasks.base import Scorer

__all__ = ["ClassificationScorer"]


class ClassificationScorer(Scorer):
    """Accuracy, macro F1 over the labels present in eval, and the example-weighted loss."""

    def __init__(self) -> None:
        self._preds: list[int] = []
        self._golds: list[int] = []
        self._loss = 0.0

    def add(self, batch: dict[str, Any], loss: float, logits: Any) -> None:
        golds = batch["labels"].tolist()
        self._loss += loss * len(golds)
        self._preds += logits.argmax(-1).tolist()
        self._golds += golds

    def result(self) -> dict[str, float]:
        # Written out rather than taken from sklearn.metrics: importing it cost a second of
        # CPU in every process that evaluates (each federation member's ClientApp, per
        # message); tests/trainers/test_classification_scores.py holds these to sklearn's.
        golds, preds = self._golds, self._preds
        hits = Counter(g for g, p in zip(golds, preds, strict=True) if g == p)
        gold_counts, pred_counts = Counter(golds), Counter(preds)
        # A label's F1 is 2TP / (2TP + FP + FN): TP + FN examples have it, TP + FP are given it.
        f1s = [2 * hits[k] / (gold_counts[k] + pred_counts[k]) for k in sorted(gold_counts)]
        return {
            "accuracy": hits.total() / len(golds),
            "f1": sum(f1s) / len(f1s),
            "eval_loss": self._loss / len(golds),
        }
