"""One Ray Tune trial of a gridpoint study, on a Ray worker: what ray.py hands to Ray Tune.

`run_trial` fine-tunes the study's model (built as `tune` builds it: trainers/study.py) with the
proposed parameters and reports every evaluation under the keys below; a failure crosses
back to the driver as `TrialFailed` (its text and public reason: an exception the driver
can always unpickle). This module is what every Ray worker imports for a trial, so it loads
no more than Ray Tune's report API: the node's store, the publishing service and Optuna
stay on the driver (ray.py); torch and transformers load with the first trial's model.

Must never send the driver anything but the metrics, the step, where the trial ran and the
run's facts (sizes, precision, throughput).
"""

from __future__ import annotations

import zlib
from typing import Any

import ray
from ray import tune

from gridpoint.trainers.study_config import StudyConfig

__all__ = ["DONE", "METRICS", "NODE", "OBJECTIVE", "RUN", "STEP", "TrialFailed", "run_trial"]

#: The keys of a trial's reports: the objective value and the step (what the scheduler
#: reads), every metric, the Ray node it ran on, and in its last report (when it trained to
#: the end) the mark DONE and the run's facts.
OBJECTIVE = "objective"
STEP = "step"
DONE = "gridpoint_done"
METRICS = "gridpoint_metrics"
NODE = "ray_node"
RUN = "gridpoint_run"


class TrialFailed(Exception):
    """A trial's failure as it crosses from its Ray worker: its error text and public reason."""

    def __init__(self, error: str, failure: str) -> None:
        super().__init__(error, failure)
        self.error, self.failure = error, failure


def run_trial(params: dict[str, Any], *, study: StudyConfig, train: Any, evaluation: Any) -> None:
    """One trial on a Ray worker: fine-tunes with params, reports every evaluation."""
    from gridpoint.trainers.finetune import finetune
    from gridpoint.trainers.study import failure_reason, trial_model, trial_settings

    # Each trial its own seed, the same whenever this trial runs again.
    seed = study.seed ^ zlib.crc32(tune.get_context().get_trial_id().encode())
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    values = {**study.fixed_params(), **params}
    settings = trial_settings(study, values, seed, device)
    where = {"device": device, NODE: ray.get_runtime_context().get_node_id()}

    def on_eval(step: int, metrics: dict[str, float]) -> bool:
        tune.report(
            {OBJECTIVE: metrics[study.objective_metric], STEP: step, METRICS: metrics, **where}
        )
        return False  # the scheduler stops a trial it prunes

    try:
        loaded = trial_model(study, train, values, settings.seed)
        run = finetune(loaded, train, evaluation, settings, on_eval=on_eval)
    except Exception as exc:
        # Ray keeps the exception for the driver: one it can always unpickle.
        raise TrialFailed(f"{exc.__class__.__name__}: {exc}", failure_reason(exc)) from None
    facts = {"num_parameters": run.num_parameters, "precision": run.precision,
             "samples_per_second": run.samples_per_second,
             "trainable_parameters": run.trainable_parameters}  # fmt: skip
    tune.report({OBJECTIVE: run.metrics[study.objective_metric], STEP: run.steps,
                 METRICS: run.metrics, DONE: True, RUN: facts, **where})  # fmt: skip
