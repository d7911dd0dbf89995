"""Import rate from MLflow and Optuna storage, and the Trainer callback's overhead.

    .venv/bin/python bench/import_rate.py [--sizes 1000,10000] [--repeats 3]

For each size: a real MLflow tracking store (SQLite) and a real Optuna storage (SQLite) with
that many runs (every tenth MLflow run failed; every seventh Optuna trial pruned), imported by
`gridpoint import ... --json` into a fresh node home, timed end to end (process start
included); then re-imported (nothing new) and timed again. The callback's overhead: the same
tiny Trainer run with and without GridpointCallback, alternated, median of --repeats each; and,
since wall times on a shared machine vary more than 2%, the time spent inside the callback's
methods (dataset description and publishing included) as a share of the training time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integrations.sources import mlflow_store, optuna_study  # noqa: E402

TASK = ["--task", "text-classification", "--train-size", "20000", "--language", "en"]


def _gridpoint(home: Path, *args: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "gridpoint", "--home", str(home), *args, "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - started, json.loads(out.stdout)


def _import_rates(size: int, folder: Path) -> None:
    home = folder / f"home-{size}"
    subprocess.run([sys.executable, "-m", "gridpoint", "--home", str(home), "init", "--name", "B"],
                   check=True, capture_output=True)  # fmt: skip
    uri = mlflow_store(folder / f"mlflow-{size}.db", "bench", size, bulk=True)
    storage = optuna_study(folder / f"optuna-{size}.db", "bench", size)
    for source, args in (
        ("mlflow", ["import", "mlflow", "--tracking-uri", uri, "--experiment", "bench",
                    "--metric", "val_acc", *TASK]),
        ("optuna", ["import", "optuna", "--storage", storage, "--study", "bench", *TASK]),
    ):  # fmt: skip
        first, summary = _gridpoint(home, *args)
        again, repeat = _gridpoint(home, *args)
        print(
            f"{source:6} {size:>6} runs: import {first:6.1f} s ({size / first:6.0f} runs/s, "
            f"{summary['imported']} published); re-import {again:5.1f} s "
            f"({size / again:6.0f} runs/s, {repeat['imported']} new)",
            flush=True,
        )


def _train(with_callback: bool, home: Path) -> tuple[float, float]:
    """(training seconds, seconds spent inside the callback) of one tiny Trainer run."""
    import torch
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from gridpoint.integrations.transformers import GridpointCallback

    class Timed(GridpointCallback):
        spent = 0.0

        def __getattribute__(self, name: str) -> object:
            method = super().__getattribute__(name)
            if not name.startswith("on_"):
                return method

            def timed(*args: object, **kwargs: object) -> object:
                started = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    Timed.spent += time.perf_counter() - started

            return timed

    Timed.spent = 0.0
    torch.manual_seed(0)
    rows = {"input_ids": [[1 + (i * 7 + j) % 60 for j in range(16)] for i in range(256)],
            "label": [i % 2 for i in range(256)]}  # fmt: skip
    data = Dataset.from_dict(rows)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=BertForSequenceClassification(config),
            args=TrainingArguments(
                output_dir=out,
                per_device_train_batch_size=16,
                num_train_epochs=3,
                eval_strategy="steps",
                eval_steps=8,
                logging_steps=8,
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                disable_tqdm=True,
            ),  # fmt: skip
            train_dataset=data,
            eval_dataset=data.select(range(64)),
            callbacks=[Timed(home=home, study="bench")] if with_callback else [],
        )
        trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started, Timed.spent


def _callback_overhead(repeats: int, folder: Path) -> None:
    home = folder / "home-callback"
    subprocess.run([sys.executable, "-m", "gridpoint", "--home", str(home), "init", "--name", "C"],
                   check=True, capture_output=True)  # fmt: skip
    _train(False, home)  # warm-up: imports, first allocation
    plain, watched, inside = [], [], []
    for _ in range(repeats):
        plain.append(_train(False, home)[0])
        seconds, spent = _train(True, home)
        watched.append(seconds)
        inside.append(spent / seconds)
    a, b = statistics.median(plain), statistics.median(watched)
    print(
        f"Trainer, tiny BERT, 48 steps, 6 evaluations (median of {repeats}): without callback "
        f"{a:.2f} s, with {b:.2f} s ({100 * (b - a) / a:+.1f}%); time inside the callback "
        f"{100 * statistics.median(inside):.2f}% of training (min {100 * min(inside):.2f}%, "
        f"max {100 * max(inside):.2f}%)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-callback", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_callback:
            _callback_overhead(args.repeats, folder)
        for size in (int(s) for s in args.sizes.split(",")):
            _import_rates(size, folder)


if __name__ == "__main__":
    main()
