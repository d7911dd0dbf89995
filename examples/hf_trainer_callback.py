"""A Hugging Face Trainer script that shares its run through gridpoint: one callback.

    python examples/hf_trainer_callback.py --home ~/gridpoint

A tiny BERT built from a config (nothing is downloaded) learns made-up reviews on CPU;
GridpointCallback records each evaluation as a curve point and, when training ends, publishes
one anonymized, signed record into the node's catalog (hyperparameters from TrainingArguments,
the task measured on the train dataset) and keeps the full run privately. Then try
`gridpoint --home DIR catalog query "kind = 'trial'"`.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from gridpoint.integrations.transformers import GridpointCallback

WORDS = {1: ["great", "lovely", "fine"], 0: ["awful", "bad", "dull"]}
FILLER = ["the", "a", "movie", "was", "really", "quite", "it"]
VOCAB = {w: i + 1 for i, w in enumerate(FILLER + WORDS[0] + WORDS[1])}


def reviews(n: int, seed: int) -> Dataset:
    """Made-up reviews: text, token ids (one id per word) and a label."""
    rng = random.Random(seed)
    rows: dict[str, list[object]] = {"text": [], "input_ids": [], "label": []}
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=7)
        words.insert(rng.randrange(8), rng.choice(WORDS[label]))
        rows["text"].append(" ".join(words))
        rows["input_ids"].append([VOCAB[w] for w in words])
        rows["label"].append(label)
    return Dataset.from_dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="an initialized node home")
    parser.add_argument("--study", default="hf-example", help="private study name")
    args = parser.parse_args()
    config = BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=2)  # fmt: skip
    train, evaluation = reviews(400, 1), reviews(100, 2)
    callback = GridpointCallback(
        home=args.home, task="text-classification", study=args.study, language="en",
        train_dataset=train,  # the texts too: the Trainer drops columns the model does not take
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = Trainer(
            model=BertForSequenceClassification(config),
            args=TrainingArguments(
                output_dir=output_dir,
                learning_rate=3e-3,
                per_device_train_batch_size=16,
                num_train_epochs=3,
                eval_strategy="steps",
                eval_steps=10,
                logging_steps=10,
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                disable_tqdm=True,
                metric_for_best_model="accuracy",
            ),
            train_dataset=train,
            eval_dataset=evaluation,
            compute_metrics=lambda p: {
                "accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())
            },
            callbacks=[callback],
        )
        started = time.perf_counter()
        trainer.train()
    outcome = callback.outcome
    assert outcome is not None and outcome.record is not None
    print(
        f"trained in {time.perf_counter() - started:.1f} s; published record "
        f"{outcome.record_id}: {len(outcome.record.curve)} curve points, "
        f"metrics {outcome.record.metrics}"
    )


if __name__ == "__main__":
    main()
