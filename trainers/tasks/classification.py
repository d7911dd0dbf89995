"""Scoring one label per example (texts, images): accuracy, macro F1 and mean eval loss."""

from __future__ import annotations

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
        from sklearn.metrics import accuracy_score, f1_score

        golds, preds = self._golds, self._preds
        return {
            "accuracy": float(accuracy_score(golds, preds)),
            "f1": float(
                f1_score(golds, preds, labels=sorted(set(golds)), average="macro", zero_division=0)
            ),
            "eval_loss": self._loss / len(golds),
        }
