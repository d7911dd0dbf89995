"""Foreign names to gridpoint's vocabulary: what Trainer, Optuna and MLflow call a parameter or metric.

A team's own code says `lr`, `per_device_train_batch_size` or `eval_accuracy`; a record says
`learning_rate`, `batch_size`, `accuracy`. This table only renames: a name maps onto a target
only when that target is in the anonymizer's allowlist (KNOWN_PARAMS, PUBLIC_METRICS), so it
can never widen what leaves a node. Every name that maps nowhere is reported by the caller.

Must never decide by itself that a value may be published: the anonymizer does.
"""

from __future__ import annotations

import math

from gridpoint.node.publishing.anonymize import PUBLIC_METRICS
from gridpoint.schema import ParamValue
from gridpoint.trainers.study_config import KNOWN_PARAMS

__all__ = ["INTEGER_PARAMS", "public_metric", "public_param", "public_param_value"]

#: Parameters whose values are counts; a float like 16.0 becomes 16, 16.5 is refused.
INTEGER_PARAMS = frozenset({"batch_size", "epochs", "lora_rank"})

_PARAM_ALIASES = {
    "lr": "learning_rate",
    "learning_rate": "learning_rate",
    "batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "epochs": "epochs",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "warmup_ratio": "warmup_ratio",
    "weight_decay": "weight_decay",
    "lora_rank": "lora_rank",
    "lora_r": "lora_rank",
    "dropout": "dropout",
    "dropout_rate": "dropout",
    "hidden_dropout": "dropout",
    "hidden_dropout_prob": "dropout",
}

_METRIC_ALIASES = {
    "accuracy": "accuracy",
    "acc": "accuracy",
    "eval_accuracy": "accuracy",
    "eval_acc": "accuracy",
    "val_accuracy": "accuracy",
    "val_acc": "accuracy",
    "f1": "f1",
    "eval_f1": "f1",
    "val_f1": "f1",
    "eval_loss": "eval_loss",
    "val_loss": "eval_loss",
    "validation_loss": "eval_loss",
    "train_loss": "train_loss",
    "training_loss": "train_loss",
    "loss": "train_loss",
}


def public_param(name: str) -> str | None:
    """The vocabulary name of a foreign hyperparameter name, or None."""
    target = _PARAM_ALIASES.get(name.strip().lower())
    return target if target in KNOWN_PARAMS else None


def public_metric(name: str) -> str | None:
    """The vocabulary name of a foreign metric name, or None."""
    key = name.strip().lower()
    target = _METRIC_ALIASES.get(key, key)
    return target if target in PUBLIC_METRICS else None


def public_param_value(name: str, value: object) -> ParamValue | None:
    """A vocabulary parameter's value as a number (MLflow keeps text), or None if it is none.

    Every known parameter is numeric: a text value that does not read as a finite number is
    refused rather than published as a category, since it could carry anything.
    """
    if isinstance(value, bool):
        return None
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    if name in INTEGER_PARAMS:
        return int(number) if number.is_integer() else None
    return number
