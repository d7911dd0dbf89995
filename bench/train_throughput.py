"""Training throughput of gridpoint's fine-tuner beside a plain Hugging Face training loop.

Same model (same initial weights), same data, same batch size, optimizer, schedule and
precision (bf16 autocast on CUDA where supported, fp32 on CPU); evaluation excluded from
both timings. Runs the two alternately, `--rounds` times, and prints samples/s and
tokens/s (non-padding) for each, and gridpoint's overhead (goal: under 5%).

    python bench/train_throughput.py                       # tiny config-built BERT, CPU
    python bench/train_throughput.py --model-path DIR      # a local checkpoint (e.g. MiniLM)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from gridpoint.trainers.finetune import FineTuneSettings, finetune  # noqa: E402
from gridpoint.trainers.models import LoadedModel, load_model  # noqa: E402
from gridpoint.trainers.pipeline import LabeledTexts  # noqa: E402
from gridpoint.trainers.study_config import ModelSpec  # noqa: E402

WORDS = [
    "the",
    "a",
    "movie",
    "service",
    "product",
    "was",
    "is",
    "really",
    "quite",
    "very",
    "good",
    "great",
    "bad",
    "awful",
    "fine",
    "poor",
    "it",
    "this",
]


def make_data(n: int, words: int, seed: int) -> LabeledTexts:
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(WORDS, k=words)) for _ in range(n)]
    labels = [int("good" in t or "great" in t) for t in texts]
    return LabeledTexts(texts, labels, ["0", "1"])


def plain_loop(
    loaded: LoadedModel, data: LabeledTexts, s: FineTuneSettings, device: torch.device
) -> float:
    """The training loop of the Hugging Face course, timed. Returns seconds."""
    model = loaded.model.to(device)
    model.train()
    enc = loaded.tokenizer(
        data.texts, truncation=True, max_length=s.max_length, padding=True, return_tensors="pt"
    )
    ids, mask, labels = enc["input_ids"], enc["attention_mask"], torch.tensor(data.labels)
    generator = torch.Generator().manual_seed(s.seed)
    steps = math.ceil(len(labels) / s.batch_size) * s.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * steps), steps)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )
    start = time.perf_counter()
    for _ in range(s.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for i in range(0, len(labels), s.batch_size):
            batch = order[i : i + s.batch_size]
            with autocast():
                loss = model(
                    input_ids=ids[batch].to(device),
                    attention_mask=mask[batch].to(device),
                    labels=labels[batch].to(device),
                ).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-path", type=Path)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--words", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if args.device == "auto"
        else args.device
    )
    data = make_data(args.samples, args.words, 0)
    evaluation = make_data(64, args.words, 1)
    spec = (
        ModelSpec(path=args.model_path)
        if args.model_path
        else ModelSpec(
            config={
                "model_type": "bert",
                "hidden_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 256,
                "max_position_embeddings": 128,
                "vocab_size": 500,
            }
        )
    )
    base = load_model(spec, 2, data.texts, seed=0)
    settings = FineTuneSettings(
        learning_rate=5e-5,
        batch_size=args.batch_size,
        epochs=args.epochs,
        warmup_ratio=0.1,
        weight_decay=0.01,
        eval_interval=10**9,
        max_length=args.max_length,
        seed=0,
        device=str(device),
    )
    tokens = (
        sum(min(len(base.tokenizer(t)["input_ids"]), args.max_length) for t in data.texts)
        * args.epochs
    )
    samples = args.samples * args.epochs
    plain, ours = [], []
    for _ in range(args.rounds):
        plain.append(
            plain_loop(
                LoadedModel(copy.deepcopy(base.model), base.tokenizer, base.family, ""),
                data,
                settings,
                device,
            )
        )
        result = finetune(
            LoadedModel(copy.deepcopy(base.model), base.tokenizer, base.family, ""),
            data,
            evaluation,
            settings,
        )
        ours.append(result.train_seconds)
    p, o = min(plain), min(ours)
    params = sum(x.numel() for x in base.model.parameters())
    name = args.model_path.name if args.model_path else "tiny config-built BERT"
    print(
        f"model: {name} ({params / 1e6:.1f}M parameters); device {device}; precision {result.precision}"
    )
    print(
        f"data: {args.samples} samples x {args.epochs} epoch(s), batch {args.batch_size}, max_length {args.max_length}; best of {args.rounds}"
    )
    print(f"plain HF loop:      {samples / p:9.1f} samples/s  {tokens / p:10.0f} tokens/s")
    print(f"gridpoint finetune: {samples / o:9.1f} samples/s  {tokens / o:10.0f} tokens/s")
    print(f"overhead:           {(o / p - 1) * 100:+.1f}%  (goal < 5%)")
    print(
        f"final eval accuracy (gridpoint run): {result.metrics['accuracy']:.3f}; steps {result.steps}"
    )


if __name__ == "__main__":
    main()
