"""What trainers produce: full, private records of runs and trials.

These hold everything the organization may want to keep (including its study name and
the error of a failed trial). They are never sent anywhere by trainers; the node's
anonymizer decides what of them leaves, field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridpoint.schema import CurvePoint, TaskDescriptor

__all__ = ["FineTuneResult", "TrainingDiverged", "TrialResult"]


class TrainingDiverged(ArithmeticError):
    """The loss stopped being a finite number: the trial fails as "diverged"."""


@dataclass(frozen=True)
class FineTuneResult:
    """The outcome of one fine-tuning run."""

    curve: list[CurvePoint]
    metrics: dict[str, float]
    steps: int
    samples_seen: int
    train_seconds: float
    num_parameters: int
    trainable_parameters: int
    device: str
    precision: str
    stopped_early: bool

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass(frozen=True)
class TrialResult:
    """One trial of a study: its parameters, state and (possibly partial) run."""

    study_name: str
    number: int
    state: str  # "complete" | "pruned" | "failed"
    params: dict[str, float | int | str | bool]
    run: FineTuneResult | None
    task: TaskDescriptor
    error: str | None = None
    curve: list[CurvePoint] = field(default_factory=list)
    #: For a failed trial, why in the fixed vocabulary of gridpoint.schema.vocabulary.FAILURES
    #: ("diverged", "out-of-memory"), or "" when the failure says nothing about the
    #: hyperparameters (a bug, a missing file): such trials are kept but never published.
    failure: str = ""
