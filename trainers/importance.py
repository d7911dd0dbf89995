"""Hyperparameter importances of a study's trials, by Optuna's own importance evaluator.

Run as `python -m gridpoint.trainers.importance`: reads the trials as JSON on stdin
(`{"maximize": BOOL, "distributions": {NAME: OPTUNA_DISTRIBUTION_JSON}, "trials": [[PARAMS,
VALUE], ...]}`, complete trials only, each parameter as Optuna stores it: a choice by its
index) and prints one JSON line, `{"importances": {NAME:
SHARE}, "evaluator": CLASS_NAME}` or `{"error": MESSAGE}`. The web UI runs it in a child
process: the UI never loads optuna (an import-linter contract), and the numbers are
Optuna's (its default evaluator, PED-ANOVA in Optuna 5), computed on the study's trials
exactly as stored.

The trials are rebuilt in an in-memory study (optuna.trial.create_trial): no storage is
opened here, so nothing can be written to one.

Must never open a storage, print anything but its one JSON line, or read more than
MAX_INPUT_BYTES.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import optuna
from optuna.distributions import json_to_distribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

__all__ = ["compute", "main"]

#: Most bytes of input read.
MAX_INPUT_BYTES = 64 * 1024 * 1024


def compute(
    maximize: bool,
    distributions: dict[str, str],
    trials: list[tuple[dict[str, float], float]],
) -> dict[str, float]:
    """Each parameter's share of the objective's variation (summing to 1), largest first;
    ValueError when the trials cannot say (fewer than 2, or a parameter out of its space)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spaces = {name: json_to_distribution(text) for name, text in distributions.items()}
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={k: spaces[k].to_external_repr(v) for k, v in params.items()},
                distributions={k: spaces[k] for k in params},
                value=value,
            )
            for params, value in trials
        ]
    )
    if len(trials) < 2:
        raise ValueError("hyperparameter importance needs at least 2 complete trials")
    found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    return {str(k): float(v) for k, v in found.items()}


def main() -> None:
    """Reads the study's trials as JSON on stdin, prints the result as one JSON line."""
    try:
        raw: Any = json.loads(sys.stdin.read(MAX_INPUT_BYTES))
        importances = compute(
            bool(raw["maximize"]),
            {str(k): str(v) for k, v in raw["distributions"].items()},
            [
                ({str(k): float(v) for k, v in params.items()}, float(value))
                for params, value in raw["trials"]
            ],
        )
        out: dict[str, Any] = {
            "importances": importances,
            "evaluator": PedAnovaImportanceEvaluator.__name__,
        }
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        out = {"error": (str(exc).splitlines() or [type(exc).__name__])[0][:300]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
