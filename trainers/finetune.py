"""One fine-tuning run of a sequence classifier, with its learning curve.

A plain, transparent torch loop (AdamW, linear warmup/decay from transformers) so that its
cost is the model's, not ours: on CUDA it autocasts to bf16 where the GPU supports it; on CPU
it runs in float32. Every `eval_interval` steps it evaluates and hands the points to an
`on_eval` callback, which may ask to stop (pruning); the partial curve is kept.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridpoint.schema import CurvePoint
from gridpoint.trainers.models import LoadedModel
from gridpoint.trainers.pipeline import LabeledTexts
from gridpoint.trainers.results import FineTuneResult, TrainingDiverged

if TYPE_CHECKING:
    import torch

__all__ = ["FineTuneSettings", "OnEval", "finetune"]

#: Called with (step, metrics); returning True stops the run (e.g. pruned).
OnEval = Callable[[int, dict[str, float]], bool]


@dataclass(frozen=True)
class FineTuneSettings:
    learning_rate: float
    batch_size: int
    epochs: int
    warmup_ratio: float
    weight_decay: float
    eval_interval: int
    max_length: int
    seed: int
    lora_rank: int | None = None
    device: str = "auto"


def _device(requested: str) -> torch.device:
    import torch

    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _encode(
    loaded: LoadedModel, data: LabeledTexts, max_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    import torch

    enc = loaded.tokenizer(
        data.texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"], torch.tensor(data.labels)


def _apply_lora(model: Any, rank: int) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    return get_peft_model(
        model, LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, lora_dropout=0.0)
    )


def evaluate(
    model: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, float]:
    """Accuracy, macro F1 and mean loss over the eval batches."""
    import torch

    model.eval()
    total_loss, n, preds, golds = 0.0, 0, [], []
    with torch.no_grad():
        for ids, mask, labels in batches:
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            with autocast():
                out = model(input_ids=ids, attention_mask=mask, labels=labels)
            total_loss += float(out.loss) * len(labels)
            n += len(labels)
            preds += out.logits.argmax(-1).tolist()
            golds += labels.tolist()
    model.train()
    accuracy = sum(p == g for p, g in zip(preds, golds, strict=True)) / n
    f1s = []
    for label in set(golds):
        tp = sum(p == g == label for p, g in zip(preds, golds, strict=True))
        fp = sum(p == label != g for p, g in zip(preds, golds, strict=True))
        fn = sum(g == label != p for p, g in zip(preds, golds, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": accuracy, "f1": sum(f1s) / len(f1s), "eval_loss": total_loss / n}


def finetune(
    loaded: LoadedModel,
    train: LabeledTexts,
    evaluation: LabeledTexts,
    settings: FineTuneSettings,
    on_eval: OnEval | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> FineTuneResult:
    """Fine-tunes loaded.model on train; returns curve, final metrics and throughput."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(settings.seed)
    device = _device(settings.device)
    model = loaded.model
    if settings.lora_rank:
        model = _apply_lora(model, settings.lora_rank)
    model.to(device)
    model.train()
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast() -> AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    ids, mask, labels = _encode(loaded, train, settings.max_length)
    e_ids, e_mask, e_labels = _encode(loaded, evaluation, settings.max_length)
    eval_batches = [
        (e_ids[i : i + 64], e_mask[i : i + 64], e_labels[i : i + 64])
        for i in range(0, len(e_labels), 64)
    ]
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = math.ceil(len(labels) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(settings.warmup_ratio * total_steps), total_steps
    )

    curve: list[CurvePoint] = []
    step, seen, stopped, train_seconds = 0, 0, False, 0.0
    # Train loss summed on the device since the last evaluation: no per-step host sync.
    loss_sum, loss_count = torch.zeros((), device=device), 0
    segment_start = time.perf_counter()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def record_eval() -> bool:
        nonlocal train_seconds, segment_start, loss_sum, loss_count
        sync()
        train_seconds += time.perf_counter() - segment_start
        metrics = evaluate(model, eval_batches, device, autocast)
        metrics["train_loss"] = float(loss_sum) / max(loss_count, 1)
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainingDiverged(f"the loss is no longer finite at step {step}")
        loss_sum, loss_count = torch.zeros((), device=device), 0
        curve.extend(CurvePoint(step, k, v) for k, v in sorted(metrics.items()))
        stop = bool(on_eval and on_eval(step, metrics))
        segment_start = time.perf_counter()
        return stop

    for _ in range(settings.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            b_ids, b_mask, b_labels = (
                ids[batch].to(device),
                mask[batch].to(device),
                labels[batch].to(device),
            )
            with autocast():
                loss = model(input_ids=b_ids, attention_mask=b_mask, labels=b_labels).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += len(batch)
            loss_sum += loss.detach()
            loss_count += 1
            if on_step:
                on_step(step, total_steps)
            if step % settings.eval_interval == 0 and step < total_steps and record_eval():
                stopped = True
                break
        if stopped:
            break
    if not stopped:
        record_eval()
    final = {s.metric: s.value for s in curve if s.step == step}
    return FineTuneResult(
        curve=curve,
        metrics=final,
        steps=step,
        samples_seen=seen,
        train_seconds=train_seconds,
        num_parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in trainable),
        device=device.type,
        precision="bf16" if bf16 else "fp32",
        stopped_early=stopped,
    )
