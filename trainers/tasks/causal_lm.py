"""Causal-LM instruction tuning: prompt/response pairs, loss on the response tokens only.

A prompt goes through the tokenizer's chat template when it has one (instruct models), so the
model sees the format it was tuned on; the labels of every prompt token are -100. Metrics:
eval loss (per response token) and perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gridpoint.errors import PipelineError
from gridpoint.schema import TaskDescriptor
from gridpoint.schema.vocabulary import size_bucket, text_length_bucket
from gridpoint.trainers.tasks.base import IGNORE, Features, Scorer, TaskType, pad_batch, tensors

__all__ = ["CausalLM", "InstructionPairs"]


@dataclass(frozen=True)
class InstructionPairs:
    """Prompts and the responses a model should learn to give."""

    prompts: list[str]
    responses: list[str]

    @property
    def label_names(self) -> list[str]:
        return []

    def __len__(self) -> int:
        return len(self.prompts)


class _LossScorer(Scorer):
    """Eval loss weighted by the response tokens of each batch, and its perplexity."""

    def __init__(self) -> None:
        self._loss, self._tokens = 0.0, 0

    def add(self, batch: dict[str, Any], loss: float, logits: Any) -> None:
        # The model shifts labels by one: the first position never counts.
        tokens = int((batch["labels"][:, 1:] != IGNORE).sum())
        self._loss += loss * tokens
        self._tokens += tokens

    def result(self) -> dict[str, float]:
        loss = self._loss / max(self._tokens, 1)
        return {"eval_loss": loss, "perplexity": math.exp(min(loss, 700.0))}


class CausalLM(TaskType):
    name = "causal-lm"
    auto_class_name = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    num_labels_needed = False
    pair_name = "(prompt, response) pair"

    def check_pair(self, value: Any, target: Any, which: str, index: int) -> None:
        if not (isinstance(value, str) and isinstance(target, str) and target):
            raise PipelineError(
                f"{which} split item {index} is not a (prompt, response) pair of strings"
            )

    def prepare(
        self, train: list[tuple[Any, Any]], evaluation: list[tuple[Any, Any]]
    ) -> tuple[InstructionPairs, InstructionPairs]:
        if len(train) < 2 or len(evaluation) < 1:
            raise PipelineError("the train split needs at least 2 examples and eval at least 1")

        def pairs(items: list[tuple[Any, Any]]) -> InstructionPairs:
            return InstructionPairs([str(p) for p, _ in items], [str(r) for _, r in items])

        return pairs(train), pairs(evaluation)

    def describe(self, train: InstructionPairs, language: str) -> TaskDescriptor:
        return TaskDescriptor(
            type=self.name,
            size_bucket=size_bucket(len(train)),
            language=language,
            text_length_bucket=text_length_bucket(
                [p + " " + r for p, r in zip(train.prompts, train.responses, strict=True)]
            ),
        )

    def num_labels(self, train: Any) -> int:
        return 0

    def config_kwargs(self, num_labels: int, processor: Any) -> dict[str, Any]:
        return {
            "vocab_size": len(processor),
            "pad_token_id": processor.pad_token_id,
            "bos_token_id": processor.bos_token_id,
            "eos_token_id": processor.eos_token_id,
        }

    def texts(self, train: InstructionPairs) -> list[str]:
        return train.prompts + train.responses

    def config_processor(self, train_texts: list[str], settings: dict[str, Any]) -> Any:
        from gridpoint.trainers.word_tokenizer import trained_tokenizer

        return trained_tokenizer(train_texts, int(settings.get("vocab_size", 2000)))

    def prepare_model(self, model: Any, processor: Any) -> None:
        if processor.pad_token is None:
            # Padding positions are masked out of attention and loss: any token will do.
            processor.pad_token = processor.eos_token
        # Right padding keeps every example's positions starting at 0.
        processor.padding_side = "right"
        if model.config.pad_token_id is None:
            model.config.pad_token_id = processor.pad_token_id

    def _prompt_ids(self, processor: Any, prompt: str) -> list[int]:
        if getattr(processor, "chat_template", None):
            ids = processor.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return list(ids)
        bos = [processor.bos_token_id] if processor.bos_token_id is not None else []
        return bos + list(processor(prompt, add_special_tokens=False)["input_ids"])

    def features(self, processor: Any, data: InstructionPairs, max_length: int) -> list[Features]:
        eos = [processor.eos_token_id] if processor.eos_token_id is not None else []
        out = []
        for prompt, response in zip(data.prompts, data.responses, strict=True):
            answer = (list(processor(response, add_special_tokens=False)["input_ids"]) + eos)[
                : max_length - 1
            ]
            question = self._prompt_ids(processor, prompt)[-(max_length - len(answer)) :]
            ids = question + answer
            out.append(
                {
                    "input_ids": ids,
                    "attention_mask": [1] * len(ids),
                    "labels": [IGNORE] * len(question) + answer,
                }
            )
        return tensors({k: [row[k] for row in out] for k in out[0]}) if out else []

    def collator(self, processor: Any) -> Callable[[list[Features]], dict[str, Any]]:
        return partial(pad_batch, pad_id=processor.pad_token_id or 0)

    def scorer(self) -> Scorer:
        return _LossScorer()
