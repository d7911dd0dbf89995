"""Token classification: a tag per word (entities in IOB2), scored seqeval-style.

Words come pre-split; each word's first sub-token carries its tag, the other sub-tokens and
special tokens -100. Entity F1 (micro, over whole entities) with the `seqeval` package;
accuracy over words. Tag names stay in this process: models see tag ids only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gridpoint.errors import PipelineError
from gridpoint.schema import TaskDescriptor
from gridpoint.schema.vocabulary import balance_bucket, size_bucket, text_length_bucket
from gridpoint.trainers.tasks.base import (
    IGNORE,
    Features,
    Scorer,
    TaskType,
    label_index,
    pad_batch,
    tensors,
)

__all__ = ["TaggedWords", "TokenClassification"]


@dataclass(frozen=True)
class TaggedWords:
    """Sentences as words, with one tag id per word; label_names are the private tag names."""

    words: list[list[str]]
    tags: list[list[int]]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.words)


class _EntityScorer(Scorer):
    def __init__(self, names: list[str]) -> None:
        self._names = names
        self._golds: list[list[str]] = []
        self._preds: list[list[str]] = []
        self._loss, self._n = 0.0, 0

    def add(self, batch: dict[str, Any], loss: float, logits: Any) -> None:
        labels = batch["labels"].tolist()
        preds = logits.argmax(-1).tolist()
        for gold_row, pred_row in zip(labels, preds, strict=True):
            kept = [(g, p) for g, p in zip(gold_row, pred_row, strict=True) if g != IGNORE]
            self._golds.append([self._names[g] for g, _ in kept])
            self._preds.append([self._names[p] for _, p in kept])
        self._loss += loss * len(labels)
        self._n += len(labels)

    def result(self) -> dict[str, float]:
        from seqeval.metrics import accuracy_score, f1_score

        return {
            "f1": float(f1_score(self._golds, self._preds, zero_division=0)),
            "accuracy": float(accuracy_score(self._golds, self._preds)),
            "eval_loss": self._loss / max(self._n, 1),
        }


class TokenClassification(TaskType):
    name = "token-classification"
    auto_class_name = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    pair_name = "(words, tags) pair of equal-length lists"

    def __init__(self) -> None:
        self._names: list[str] = []

    def check_pair(self, value: Any, target: Any, which: str, index: int) -> None:
        if not (
            isinstance(value, list | tuple)
            and isinstance(target, list | tuple)
            and len(value) == len(target) > 0
            and all(isinstance(w, str) for w in value)
        ):
            raise PipelineError(f"{which} split item {index} is not a {self.pair_name}")

    def prepare(
        self, train: list[tuple[Any, Any]], evaluation: list[tuple[Any, Any]]
    ) -> tuple[TaggedWords, TaggedWords]:
        if len(train) < 2 or len(evaluation) < 1:
            raise PipelineError("the train split needs at least 2 examples and eval at least 1")
        index = label_index(
            [str(t) for _, tags in train for t in tags],
            [str(t) for _, tags in evaluation for t in tags],
        )
        names = list(index)

        def tagged(pairs: list[tuple[Any, Any]]) -> TaggedWords:
            return TaggedWords(
                [[str(w) for w in words] for words, _ in pairs],
                [[index[str(t)] for t in tags] for _, tags in pairs],
                names,
            )

        return tagged(train), tagged(evaluation)

    def describe(self, train: TaggedWords, language: str) -> TaskDescriptor:
        return TaskDescriptor(
            type=self.name,
            num_labels=len(train.label_names),
            size_bucket=size_bucket(len(train)),
            balance_bucket=balance_bucket([t for tags in train.tags for t in tags]),
            language=language,
            text_length_bucket=text_length_bucket([" ".join(w) for w in train.words]),
        )

    def texts(self, train: TaggedWords) -> list[str]:
        return [" ".join(words) for words in train.words]

    def config_processor(self, train_texts: list[str], settings: dict[str, Any]) -> Any:
        from gridpoint.trainers.word_tokenizer import trained_tokenizer

        return trained_tokenizer(train_texts, int(settings.get("vocab_size", 2000)))

    def features(self, processor: Any, data: TaggedWords, max_length: int) -> list[Features]:
        self._names = data.label_names
        enc = processor(
            data.words, is_split_into_words=True, truncation=True, max_length=max_length
        )
        out = []
        for i, tags in enumerate(data.tags):
            labels, previous = [], None
            for word in enc.word_ids(i):
                labels.append(IGNORE if word is None or word == previous else tags[word])
                previous = word
            out.append(
                {
                    "input_ids": enc["input_ids"][i],
                    "attention_mask": enc["attention_mask"][i],
                    "labels": labels,
                }
            )
        return tensors({k: [row[k] for row in out] for k in out[0]}) if out else []

    def collator(self, processor: Any) -> Callable[[list[Features]], dict[str, Any]]:
        return partial(pad_batch, pad_id=processor.pad_token_id or 0)

    def scorer(self) -> Scorer:
        return _EntityScorer(self._names)
