"""Training throughput of each task type: gridpoint's loop beside a plain loop and HF `Trainer`.

For each task type (text classification, causal-LM SFT, token classification, image
classification): the same config-built model (same initial weights), the same data, batch
size, optimizer (AdamW), linear schedule and precision (fp32 on CPU, bf16 autocast on CUDA);
evaluation and tokenization excluded from every timing. Three ways to train:

- gridpoint: `trainers.finetune` (length-grouped, dynamically padded batches);
- plain: a bare transformers loop (DataLoader, shuffled, the same HF collator, AdamW);
- trainer: Hugging Face `Trainer` with evaluation, saving and logging off.

Runs them alternately `--rounds` times and prints the median samples/s of each and
gridpoint's overhead against the plain loop (goal: at most 5%; negative is faster).

    python bench/task_throughput.py                 # every task, CPU, about 3 minutes
    python bench/task_throughput.py --tasks causal-lm --device cuda --scale 4
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import torch  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from gridpoint.trainers.finetune import FineTuneSettings, finetune  # noqa: E402
from gridpoint.trainers.models import LoadedModel, load_model  # noqa: E402
from gridpoint.trainers.study_config import ModelSpec  # noqa: E402
from gridpoint.trainers.tasks import task_type  # noqa: E402


def _width(scale: int) -> dict[str, int]:
    hidden = 64 * scale
    return {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2}


def _texts(n: int) -> list[tuple[str, str]]:
    from tiny_pipeline import make

    return make(n, seed=1)


def _instructions(n: int) -> list[tuple[str, str]]:
    from causal_lm_pipeline import _pair

    rng = random.Random(1)
    return [_pair(rng) for _ in range(n)]


def _entities(n: int) -> list[tuple[list[str], list[str]]]:
    from token_classification_pipeline import _sentence

    rng = random.Random(1)
    return [_sentence(rng) for _ in range(n)]


def _images(n: int) -> list[Any]:
    from image_classification_pipeline import _split

    return _split(n, 1)


def setups(scale: int) -> dict[str, tuple[dict[str, Any], Any]]:
    text = {"model_type": "bert", "num_attention_heads": 4, "max_position_embeddings": 128,
            "vocab_size": 500, **_width(scale)}  # fmt: skip
    llama = {"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 4,
             "max_position_embeddings": 128, "vocab_size": 500, **_width(scale)}  # fmt: skip
    vit = {"model_type": "vit", "num_attention_heads": 4, "image_size": 32, "patch_size": 4,
           **_width(scale)}  # fmt: skip
    return {
        "text-classification": (text, _texts),
        "causal-lm": (llama, _instructions),
        "token-classification": (text, _entities),
        "image-classification": (vit, _images),
    }


def _prepare(task: str, config: dict[str, Any], make: Any, n: int) -> tuple[Any, Any, LoadedModel]:
    kind = task_type(task)
    pairs = make(n + 32)
    train, evaluation = kind.prepare(pairs[:n], pairs[n:])
    loaded = load_model(
        ModelSpec(config=config), kind.num_labels(train), kind.texts(train), 0, task=task
    )
    return train, evaluation, loaded


def _autocast(device: torch.device) -> Any:
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _plain(task: str, loaded: LoadedModel, train: Any, args: argparse.Namespace) -> float:
    """A bare loop as a user would write it: samples/s."""
    kind = task_type(task)
    device = torch.device(args.device)
    model = copy.deepcopy(loaded.model).to(device).train()
    features = kind.features(loaded.processor, train, args.max_length)
    loader = torch.utils.data.DataLoader(
        features,
        batch_size=args.batch_size,
        shuffle=True,
        collate_fn=kind.collator(loaded.processor),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(loader))
    start, seen = time.perf_counter(), 0
    for batch in loader:
        with _autocast(device):
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(batch["labels"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def _trainer(task: str, loaded: LoadedModel, train: Any, args: argparse.Namespace) -> float:
    """Hugging Face Trainer, evaluation/saving/logging off: samples/s of trainer.train()."""
    from transformers import Trainer, TrainingArguments

    kind = task_type(task)
    features = kind.features(loaded.processor, train, args.max_length)
    with tempfile.TemporaryDirectory() as out:
        settings = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            learning_rate=1e-3,
            lr_scheduler_type="linear",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            use_cpu=args.device == "cpu",
            bf16=args.device.startswith("cuda") and torch.cuda.is_bf16_supported(),
            disable_tqdm=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        trainer = Trainer(
            model=copy.deepcopy(loaded.model),
            args=settings,
            train_dataset=features,
            data_collator=kind.collator(loaded.processor),
        )
        start = time.perf_counter()
        trainer.train()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return len(features) / (time.perf_counter() - start)


def _ours(
    task: str, loaded: LoadedModel, train: Any, evaluation: Any, args: argparse.Namespace
) -> float:
    copied = LoadedModel(copy.deepcopy(loaded.model), loaded.processor, loaded.family, "")
    settings = FineTuneSettings(
        learning_rate=1e-3, batch_size=args.batch_size, epochs=1, warmup_ratio=0.0,
        weight_decay=0.0, eval_interval=10**9, max_length=args.max_length, seed=0,
        device=args.device, task=task,
    )  # fmt: skip
    return finetune(copied, train, evaluation, settings).samples_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", default="text-classification,causal-lm,token-classification,image-classification"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=int, default=2, help="width: hidden size 64 x scale")
    parser.add_argument("--no-trainer", action="store_true", help="skip HF Trainer")
    args = parser.parse_args()
    torch.manual_seed(0)
    all_setups = setups(args.scale)
    print(f"device {args.device}, {args.samples} samples, batch {args.batch_size}, "
          f"hidden {64 * args.scale}, {args.rounds} rounds (median), torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'task':22} {'gridpoint':>10} {'plain':>10} {'Trainer':>10} {'overhead':>9}")
    for task in args.tasks.split(","):
        config, make = all_setups[task]
        train, evaluation, loaded = _prepare(task, config, make, args.samples)
        ours, plain, hf = [], [], []
        for _ in range(args.rounds):
            ours.append(_ours(task, loaded, train, evaluation, args))
            plain.append(_plain(task, loaded, train, args))
            if not args.no_trainer:
                hf.append(_trainer(task, loaded, train, args))
        o, p = statistics.median(ours), statistics.median(plain)
        h = f"{statistics.median(hf):10.1f}" if hf else f"{'-':>10}"
        print(f"{task:22} {o:10.1f} {p:10.1f} {h} {100 * (p - o) / p:8.1f}%")


if __name__ == "__main__":
    main()
