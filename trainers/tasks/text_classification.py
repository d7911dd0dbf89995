"""Text classification: one label per text (sentiment, topic, intent)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gridpoint.errors import PipelineError
from gridpoint.schema import TaskDescriptor
from gridpoint.schema.vocabulary import balance_bucket, size_bucket, text_length_bucket
from gridpoint.trainers.tasks.base import (
    Features,
    Scorer,
    TaskType,
    label_index,
    pad_batch,
    tensors,
)
from gridpoint.trainers.tasks.classification import ClassificationScorer

__all__ = ["LabeledTexts", "TextClassification"]


@dataclass(frozen=True)
class LabeledTexts:
    """Texts with integer labels; label_names maps ids back to the private names."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


class TextClassification(TaskType):
    name = "text-classification"
    auto_class_name = "AutoModelForSequenceClassification"
    peft_task_type = "SEQ_CLS"
    pair_name = "(text, label) pair"

    def check_pair(self, value: Any, target: Any, which: str, index: int) -> None:
        if not isinstance(value, str):
            raise PipelineError(f"{which} split item {index} is not a (text, label) pair")

    def prepare(
        self, train: list[tuple[Any, Any]], evaluation: list[tuple[Any, Any]]
    ) -> tuple[LabeledTexts, LabeledTexts]:
        if len(train) < 2 or len(evaluation) < 1:
            raise PipelineError("the train split needs at least 2 examples and eval at least 1")
        index = label_index([str(t) for _, t in train], [str(t) for _, t in evaluation])
        names = list(index)

        def labeled(pairs: list[tuple[Any, Any]]) -> LabeledTexts:
            return LabeledTexts(
                [str(t) for t, _ in pairs], [index[str(lab)] for _, lab in pairs], names
            )

        return labeled(train), labeled(evaluation)

    def describe(self, train: LabeledTexts, language: str) -> TaskDescriptor:
        return TaskDescriptor(
            type=self.name,
            num_labels=len(set(train.labels)),
            size_bucket=size_bucket(len(train.texts)),
            balance_bucket=balance_bucket(train.labels),
            language=language,
            text_length_bucket=text_length_bucket(train.texts),
        )

    def texts(self, train: LabeledTexts) -> list[str]:
        return train.texts

    def config_processor(self, train_texts: list[str], settings: dict[str, Any]) -> Any:
        from gridpoint.trainers.word_tokenizer import trained_tokenizer

        return trained_tokenizer(train_texts, int(settings.get("vocab_size", 2000)))

    def prepare_model(self, model: Any, processor: Any) -> None:
        if model.config.pad_token_id is None and processor.pad_token_id is not None:
            model.config.pad_token_id = processor.pad_token_id

    def features(self, processor: Any, data: LabeledTexts, max_length: int) -> list[Features]:
        enc = processor(data.texts, truncation=True, max_length=max_length)
        return tensors({**enc, "labels": data.labels})

    def collator(self, processor: Any) -> Callable[[list[Features]], dict[str, Any]]:
        return partial(pad_batch, pad_id=processor.pad_token_id or 0)

    def scorer(self) -> Scorer:
        return ClassificationScorer()
