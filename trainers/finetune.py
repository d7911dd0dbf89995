"""One fine-tuning run of any task type, with its learning curve.

A plain, transparent torch loop (AdamW, linear warmup/decay from transformers), so that its
cost is the model's, not ours (bench/task_throughput.py measures it against a bare loop):
batches padded to their own longest example and grouped by length, gradient accumulation,
optional gradient checkpointing; on CUDA it autocasts to bf16 where the GPU supports it, on
CPU it runs in float32. Every `eval_interval` optimizer steps it evaluates and hands the
metrics to an `on_eval` callback, which may ask to stop (pruning); the partial curve is kept.
What a task's data looks like, how it is batched and scored is the task type's
(trainers/tasks/); this loop never looks inside an example.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridpoint.errors import TrainerError
from gridpoint.schema import CurvePoint
from gridpoint.trainers.batching import eval_batches, length_grouped_batches
from gridpoint.trainers.models import LoadedModel
from gridpoint.trainers.results import FineTuneResult, TrainingDiverged
from gridpoint.trainers.tasks import task_type
from gridpoint.trainers.tasks.base import Features, TaskType

if TYPE_CHECKING:
    import torch

__all__ = [
    "FineTuneSettings",
    "OnEval",
    "apply_lora",
    "evaluate",
    "finetune",
    "freeze_base",
    "head_names",
]

#: Called with (step, metrics); returning True stops the run (e.g. pruned).
OnEval = Callable[[int, dict[str, float]], bool]
#: Turns an evaluation's exact metrics into the ones released (privacy mode): only what it
#: returns reaches the curve, the final metrics and on_eval.
Release = Callable[[dict[str, float]], dict[str, float]]


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
    task: str = "text-classification"
    #: Micro-batches of batch_size per optimizer step.
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = False
    #: Train only the task's head on the frozen pretrained model (`freeze_base`): the few
    #: parameters DP-SGD's noise does not drown on a small dataset (trainers/privacy/guidance.py).
    head_only: bool = False
    #: DP-SGD (trainers/privacy/dpsgd.py): the noise multiplier (None: plain training) and
    #: the per-example clipping bound.
    dp_noise_multiplier: float | None = None
    dp_max_grad_norm: float = 1.0


def _device(requested: str) -> torch.device:
    import torch

    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _checkpoint_activations(model: Any) -> None:
    """Recompute activations in the backward pass (transformers 5 names it activation checkpointing)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def apply_lora(model: Any, rank: int, task: TaskType) -> Any:
    """model wrapped with LoRA adapters of rank (and the task's head trainable)."""
    from peft import LoraConfig, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as KNOWN

    config = LoraConfig(
        task_type=task.peft_task_type or None,
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        # peft knows the attention projections of common text models; for the others
        # (ViT, CNNs) every linear layer but the head takes an adapter.
        target_modules=None if model.config.model_type in KNOWN else "all-linear",
        modules_to_save=list(task.lora_modules_to_save) or None,
    )
    return get_peft_model(model, config)


def _base_of(model: Any) -> Any:
    """The model's base_model; TrainerError when it has no head apart from it."""
    base = getattr(model, "base_model", model)
    if base is model:
        raise TrainerError(
            f"training.trainable = 'head': {type(model).__name__} has no head apart from its "
            "base model; use trainable = 'all'"
        )
    return base


def freeze_base(model: Any) -> Any:
    """Freezes everything but the task's head (what is not the model's base_model); returns
    the frozen base, which the loop keeps in eval mode (no dropout in the features the head
    learns from, no normalization statistics updated).

    TrainerError when the model has no trainable head apart from its base (a causal LM's head
    is usually tied to its input embeddings).
    """
    base = _base_of(model)
    base.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainerError(
            f"training.trainable = 'head': {type(model).__name__}'s head shares its weights with "
            "the base model (tied), so nothing would train; use trainable = 'all'"
        )
    return base


def head_names(model: Any) -> list[str]:
    """The state-dict names of the task's head: all that head-only training changes (the
    tensors freeze_base leaves trainable, and the head's buffers). A head weight tied to the
    base is the base's. TrainerError as freeze_base's when the model has no head of its own."""
    base = _base_of(model)
    in_base = {id(t) for t in (*base.parameters(), *base.buffers())}
    return [name for name, t in model.state_dict(keep_vars=True).items() if id(t) not in in_base]


def _evaluate(
    model: Any,
    task: TaskType,
    batches: list[dict[str, Any]],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, float]:
    import torch

    model.eval()
    scorer = task.scorer()
    with torch.no_grad():
        for batch in batches:
            on_device = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                out = model(**on_device)
            scorer.add(batch, float(out.loss), out.logits.float().cpu())
    return scorer.result()


def _batches(
    features: list[Features], batches: list[list[int]], collate: Callable[[list[Features]], Any]
) -> list[dict[str, Any]]:
    return [dict(collate([features[i] for i in batch])) for batch in batches]


def finetune(
    loaded: LoadedModel,
    train: Any,
    evaluation: Any,
    settings: FineTuneSettings,
    on_eval: OnEval | None = None,
    on_step: Callable[[int, int], None] | None = None,
    release: Release | None = None,
) -> FineTuneResult:
    """Fine-tunes loaded.model on train; returns curve, final metrics and throughput.

    Afterwards loaded.model is the trained model (wrapped in LoRA adapters with lora_rank;
    with head_only, its base model frozen and only the head changed).
    With settings.dp_noise_multiplier it trains by DP-SGD (Poisson-sampled batches, one
    optimizer step each, float32); with release, only released evaluation values are kept.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    task = task_type(settings.task)
    torch.manual_seed(settings.seed)
    device = _device(settings.device)
    if device.type == "cuda" and device.index is not None:
        # Per thread: trials on several GPUs each keep theirs as the current device.
        torch.cuda.set_device(device)
    model = loaded.model
    if settings.gradient_checkpointing:
        _checkpoint_activations(model)
    if settings.lora_rank and settings.head_only:
        raise TrainerError("LoRA adapters and head-only training exclude each other")
    if settings.lora_rank:
        model = apply_lora(model, settings.lora_rank, task)
        loaded.model = model
    frozen = freeze_base(model) if settings.head_only else None
    model.to(device)

    def train_mode() -> None:
        model.train()
        if frozen is not None:
            frozen.eval()

    train_mode()
    private = settings.dp_noise_multiplier is not None
    # Opacus's per-example gradients are computed in float32: no autocast under DP-SGD.
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported() and not private

    def autocast() -> AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    collate = task.collator(loaded.processor)
    train_features = task.features(loaded.processor, train, settings.max_length)
    eval_features = task.features(loaded.processor, evaluation, settings.max_length)
    lengths = [task.length(f) for f in train_features]
    scored = _batches(
        eval_features,
        eval_batches([task.length(f) for f in eval_features], min(64, 2 * settings.batch_size)),
        collate,
    )
    accumulation = settings.gradient_accumulation
    micro_per_epoch = math.ceil(len(train_features) / settings.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / accumulation)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    dp_batches: Any = None
    no_examples: Callable[[], None] | None = None
    quiet_hooks: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    if settings.dp_noise_multiplier is not None:
        from gridpoint.trainers.privacy.dpsgd import private_training

        dp = private_training(
            model, optimizer, train_features, collate,
            batch_size=settings.batch_size,
            noise_multiplier=settings.dp_noise_multiplier,
            max_grad_norm=settings.dp_max_grad_norm,
        )  # fmt: skip
        model, optimizer, dp_batches = dp.model, dp.optimizer, dp.batches
        accumulation, steps_per_epoch = 1, len(dp_batches)
        no_examples, quiet_hooks = dp.no_examples, dp.quiet_hooks
    total_steps = steps_per_epoch * settings.epochs
    if settings.dp_noise_multiplier is not None:
        from gridpoint.trainers.privacy.guidance import advice

        # Before the minutes it costs: a run its noise drowns is said so, with what to change.
        warning = advice(
            settings.dp_noise_multiplier,
            dp.sample_rate,
            len(train_features),
            sum(p.numel() for p in model.parameters() if p.requires_grad),
            total_steps,
            head_only=settings.head_only,
        )
        if warning:
            logging.getLogger(__name__).warning(warning)
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
            torch.cuda.synchronize(device)

    def record_eval() -> bool:
        nonlocal train_seconds, segment_start, loss_sum, loss_count
        sync()
        train_seconds += time.perf_counter() - segment_start
        metrics = _evaluate(model, task, scored, device, autocast)
        train_mode()
        metrics["train_loss"] = float(loss_sum) / max(loss_count, 1)
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainingDiverged(f"the loss is no longer finite at step {step}")
        if release is not None:
            metrics = release(metrics)
        loss_sum, loss_count = torch.zeros((), device=device), 0
        curve.extend(CurvePoint(step, k, v) for k, v in sorted(metrics.items()))
        stop = bool(on_eval and on_eval(step, metrics))
        segment_start = time.perf_counter()
        return stop

    for epoch in range(settings.epochs):
        if dp_batches is not None:
            micro = [[-1]] * steps_per_epoch  # placeholders: Opacus draws the batches
            drawn = iter(dp_batches)
        else:
            micro = length_grouped_batches(
                lengths, settings.batch_size, settings.seed * 1000 + epoch
            )
        for start in range(0, len(micro), accumulation):
            group = micro[start : start + accumulation]
            forwarded = False
            for indices in group:
                if dp_batches is not None:
                    batch = next(drawn)
                    size = len(next(iter(batch.values()))) if batch else 0
                    if size == 0 and no_examples is not None:
                        no_examples()  # the sampling drew nobody: still a (noise-only) step
                        continue
                else:
                    batch = collate([train_features[i] for i in indices])
                    size = len(indices)
                with autocast():
                    loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                with quiet_hooks():
                    (loss / len(group)).backward()
                loss_sum += loss.detach() / len(group)
                seen += size
                forwarded = True
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if forwarded:
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
    if dp_batches is not None:
        from gridpoint.trainers.privacy.dpsgd import release_model

        model = release_model(model)
        loaded.model = model
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


def evaluate(loaded: LoadedModel, evaluation: Any, settings: FineTuneSettings) -> dict[str, float]:
    """The task's metrics (and eval_loss) of loaded.model on `evaluation`, without training."""
    import torch

    task = task_type(settings.task)
    device = _device(settings.device)
    model = loaded.model.to(device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast() -> AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    features = task.features(loaded.processor, evaluation, settings.max_length)
    batches = _batches(
        features,
        eval_batches([task.length(f) for f in features], min(64, 2 * settings.batch_size)),
        task.collator(loaded.processor),
    )
    return _evaluate(model, task, batches, device, autocast)
