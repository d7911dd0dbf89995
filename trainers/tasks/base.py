"""What a task type is to the trainer: its data, model class, batches, metrics and descriptor.

One subclass per task type (the other modules of this package). The fine-tuning loop and the
study call only these methods, so a task's data never meets code that does not know its shape.
Must never put a label name, a text, a file name or an exact size into a descriptor or a
metric name: those are the only parts of a task that reach a record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gridpoint.errors import PipelineError
from gridpoint.schema import TaskDescriptor

__all__ = [
    "IGNORE",
    "Columns",
    "Features",
    "Scorer",
    "TaskType",
    "label_index",
    "pad_batch",
    "tensors",
]

#: One encoded example: model inputs as 1-D tensors (or a scalar label), padded into batches.
Features = dict[str, Any]
#: The label of a position that is not scored (prompt tokens, sub-words, padding).
IGNORE = -100


class Scorer(ABC):
    """Accumulates one evaluation pass, batch by batch, into the task's metrics."""

    @abstractmethod
    def add(self, batch: dict[str, Any], loss: float, logits: Any) -> None:
        """One batch: its inputs (with labels), the model's mean loss and its logits."""

    @abstractmethod
    def result(self) -> dict[str, float]:
        """The metrics of everything added (eval_loss among them)."""


@dataclass(frozen=True)
class Columns:
    """The input and target columns of a `datasets.Dataset` from the pipeline."""

    input: str
    target: str


class TaskType(ABC):
    """A task type: the methods the loop and the study call, in that order."""

    name: ClassVar[str]
    #: transformers' Auto class name for this task (e.g. "AutoModelForCausalLM").
    auto_class_name: ClassVar[str]
    #: peft's TaskType name, or "" when the head is listed in lora_modules_to_save instead.
    peft_task_type: ClassVar[str] = ""

    def read(self, split: Any, columns: Columns, which: str) -> list[tuple[Any, Any]]:
        """(input, target) pairs of one split: a `datasets.Dataset` or a sequence of pairs."""
        if hasattr(split, "column_names"):
            missing = [c for c in (columns.input, columns.target) if c not in split.column_names]
            if missing:
                raise PipelineError(f"{which} split lacks the configured input/target column(s)")
            return list(zip(split[columns.input], split[columns.target], strict=True))
        if not isinstance(split, Sequence) or isinstance(split, str | bytes):
            raise PipelineError(
                f"{which} split must be a datasets.Dataset or a sequence of {self.pair_name}"
            )
        pairs = []
        for i, item in enumerate(split):
            if not (isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2):
                raise PipelineError(f"{which} split item {i} is not a {self.pair_name}")
            self.check_pair(item[0], item[1], which, i)
            pairs.append((item[0], item[1]))
        return pairs

    pair_name: ClassVar[str] = "(input, target) pair"

    def check_pair(self, value: Any, target: Any, which: str, index: int) -> None:  # noqa: B027
        """Refuses a malformed pair, naming its split and index only (never its content)."""

    @abstractmethod
    def prepare(
        self, train: list[tuple[Any, Any]], evaluation: list[tuple[Any, Any]]
    ) -> tuple[Any, Any]:
        """The task's (train, eval) data from the pairs; PipelineError when they cannot train."""

    @abstractmethod
    def describe(self, train: Any, language: str) -> TaskDescriptor:
        """The coarse, public descriptor of a training set."""

    #: Whether loading a checkpoint takes num_labels (a classification head).
    num_labels_needed: ClassVar[bool] = True

    def num_labels(self, train: Any) -> int:
        """The size of the model's head (0: no classification head)."""
        return len(train.label_names)

    def config_kwargs(self, num_labels: int, processor: Any) -> dict[str, Any]:
        """What a config-built model's config needs from the task (head size, vocabulary)."""
        return {"num_labels": num_labels, "vocab_size": len(processor)}

    def texts(self, train: Any) -> list[str]:
        """The texts a config-built model's word-level tokenizer is trained on (none: [])."""
        return []

    @abstractmethod
    def config_processor(self, train_texts: list[str], settings: dict[str, Any]) -> Any:
        """The processor of a model built from a config (settings: the model's config table)."""

    def pretrained_processor(self, source: str) -> Any:
        """The processor saved with a local checkpoint."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, local_files_only=True)

    def prepare_model(self, model: Any, processor: Any) -> None:  # noqa: B027
        """Adjusts a loaded model to its processor (e.g. a pad token), in place."""

    lora_modules_to_save: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def features(self, processor: Any, data: Any, max_length: int) -> list[Features]:
        """Each example encoded (unpadded: batches pad to their own longest)."""

    @abstractmethod
    def collator(self, processor: Any) -> Callable[[list[Features]], dict[str, Any]]:
        """Pads a list of features into one batch of tensors."""

    @abstractmethod
    def scorer(self) -> Scorer:
        """A fresh scorer for one evaluation pass."""

    def length(self, features: Features) -> int:
        """An example's length, for length-grouped batches (1: all alike)."""
        return len(features.get("input_ids", (0,)))


def label_index(
    train_labels: list[str], eval_labels: list[str], minimum: int = 2
) -> dict[str, int]:
    """Label name -> id over train; PipelineError if eval has names train lacks."""
    names = sorted(set(train_labels))
    if len(names) < minimum:
        raise PipelineError(f"the train split has fewer than {minimum} distinct labels")
    index = {name: i for i, name in enumerate(names)}
    unseen = set(eval_labels) - set(index)
    if unseen:
        raise PipelineError(f"the eval split has {len(unseen)} label(s) absent from train")
    return index


def tensors(rows: dict[str, list[Any]]) -> list[Features]:
    """Per-example features from column lists, each sequence a 1-D tensor made once."""
    import torch

    keys = list(rows)
    return [
        {
            k: torch.tensor(v) if isinstance(v, list) else v
            for k, v in zip(keys, values, strict=True)
        }
        for values in zip(*(rows[k] for k in keys), strict=True)
    ]


def pad_batch(features: list[Features], pad_id: int) -> dict[str, Any]:
    """One batch, each sequence right-padded to the batch's longest (labels with IGNORE).

    What transformers' padding collators do, minus their per-example Python work: measured
    on small models (bench/task_throughput.py), that work cost up to half the step time.
    """
    import torch
    from torch.nn.utils.rnn import pad_sequence

    batch = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if not isinstance(values[0], torch.Tensor):
            batch[key] = torch.tensor(values)
            continue
        pad = IGNORE if key == "labels" else pad_id if key == "input_ids" else 0
        batch[key] = pad_sequence(values, batch_first=True, padding_value=pad)
    return batch
