"""A plain Optuna study that shares its trials through gridpoint and warm-starts from the catalog.

    python examples/optuna_publisher.py --home ~/gridpoint [--trials 8]

The objective fine-tunes a tiny text classifier (built from a config, trained on CPU on made-up
sentences; nothing is downloaded) and reports accuracy after each epoch. Two things plug in:

- gridpoint.from_catalog(...) builds a warm-start sampler from the fitting studies in the
  node's catalog (this script's earlier runs, and peers' after `gridpoint catalog sync`);
  with nothing to start from it reports so and Optuna's default sampler is used;
- Publisher(...) publishes each finished trial into the node's catalog, anonymized and signed.

Run it twice: the second run warm-starts from the first.
"""

from __future__ import annotations

import argparse
import random
import time

import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution

import gridpoint
from gridpoint.integrations.optuna import Publisher

WORDS = {1: ["great", "lovely", "fine"], 0: ["awful", "bad", "dull"]}
FILLER = ["the", "a", "movie", "was", "really", "quite", "it"]


def sentences(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of made-up reviews (one sentiment word among filler) and their labels."""
    rng = random.Random(seed)
    vocab = {w: i + 1 for i, w in enumerate(FILLER + WORDS[0] + WORDS[1])}
    ids, labels = [], []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=7)
        words.insert(rng.randrange(8), rng.choice(WORDS[label]))
        ids.append([vocab[w] for w in words])
        labels.append(label)
    return torch.tensor(ids), torch.tensor(labels)


def objective(trial: optuna.Trial) -> float:
    from transformers import BertConfig, BertForSequenceClassification

    lr = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    batch_size = trial.suggest_categorical("batch_size", [8, 16, 32])
    torch.manual_seed(trial.number)
    config = BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)  # fmt: skip
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    (x, y), (ex, ey) = sentences(240, 1), sentences(80, 2)
    accuracy = 0.0
    for epoch in range(3):
        model.train()
        for start in range(0, len(x), batch_size):
            loss = model(
                input_ids=x[start : start + batch_size], labels=y[start : start + batch_size]
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(input_ids=ex).logits.argmax(-1) == ey).float().mean())
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="an initialized node home")
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {
        "learning_rate": FloatDistribution(1e-4, 1e-2, log=True),
        "batch_size": CategoricalDistribution([8, 16, 32]),
    }
    task = gridpoint.TaskDescriptor(
        "text-classification", num_labels=2, size_bucket="<1k", language="en"
    )
    sampler = gridpoint.from_catalog(
        args.home, space, task=task, objective_metric="accuracy", model_family="bert"
    )
    used = [row for row in sampler.report() if row.get("used")]
    print(f"warm start: {len(used)} prior study(ies) from the catalog" if used else
          "warm start: nothing fitting in the catalog yet; Optuna's default sampler")  # fmt: skip
    study = optuna.create_study(
        direction="maximize",
        study_name="optuna-example",
        sampler=sampler if sampler.used else None,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    publisher = Publisher(args.home, task, metric="accuracy", model_family="bert")
    started = time.perf_counter()
    study.optimize(objective, n_trials=args.trials, callbacks=[publisher])
    published = sum(o.status == "imported" for o in publisher.outcomes.values())
    print(
        f"{len(study.trials)} trials in {time.perf_counter() - started:.1f} s; best accuracy "
        f"{study.best_value:.3f}; {published} published to the node's catalog"
    )


if __name__ == "__main__":
    main()
