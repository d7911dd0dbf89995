"""Integrations: runs of a team's own training code enter a node home as `gridpoint tune`'s do.

    from gridpoint.integrations.transformers import GridpointCallback   # Hugging Face Trainer
    from gridpoint.integrations.optuna import Publisher                 # any Optuna study
    from gridpoint.integrations.ray import run_study                    # a study on Ray Tune

and `gridpoint import optuna|mlflow` for history that already exists. Importing this package
loads neither transformers nor Optuna nor MLflow nor Ray: each submodule loads its own library.

The code is organized as follows:

- transformers.py: `GridpointCallback`, a `TrainerCallback` (Trainer and TRL's trainers).
- optuna.py: `Publisher`, an Optuna study callback.
- optuna_trials.py: an Optuna study's trials as `ForeignRun`s (the storage opened read-only).
- mlflow_runs.py: an MLflow experiment's runs as `ForeignRun`s, from whichever reader fits the
  tracking URI: mlflow_files.py (a file store, `mlruns/`), mlflow_sql.py (a tracking
  database), mlflow_server.py (a tracking server's REST API, bounded in pages, runs and time).
- readonly.py: a team's SQLite or PostgreSQL database opened so that nothing can write to it.
- ray.py: `run_study`, a gridpoint study's trials on a Ray cluster through Ray Tune
  (OptunaSearch with the study's sampler, warm-started on request), published as tune's.
- ray_trial.py: one trial on a Ray worker (all a worker imports): fine-tune, report, fail.
- ray_pruner.py: `PrunerScheduler`, any Optuna pruner (the curve pruner) as a Ray scheduler.
- foreign_run.py: a run from elsewhere; renaming into the vocabulary (names.py) and leaving
  out what is outside it or out of range; the typed private run the publishing service takes.
- task.py: the task descriptor, measured on a dataset or declared.
- sink.py: each run through the node's publishing service (anonymized, signed, kept
  privately, in one transaction); idempotent by source identity.
- import_cli.py: `gridpoint import ...` (registered through the `gridpoint.commands` entry point).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["optuna", "ray", "transformers"]


def __getattr__(name: str) -> ModuleType:
    if name not in __all__:
        raise AttributeError(f"module 'gridpoint.integrations' has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
