"""What trainers produce: full, private records of runs and trials.

These hold everything the organization may want to keep (including its study name and
the error of a failed trial). They are never sent anywhere by trainers; the node's
anonymizer decides what of them leaves, field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainers.descriptor import TaskFeatures

__all__ = ["CurveSample", "FineTuneResult", "TrialResult"]


@dataclass(frozen=True)
class CurveSample:
    """One measured point: a metric at an optimizer step."""

    step: int
    metric: str
    value: float


@dataclass(frozen=True)
class FineTuneResult:
    """The outcome of one fine-tuning run."""

    curve: list[CurveSample]
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
    task: TaskFeatures
    error: str | None = None
    curve: list[CurveSample] = field(default_factory=list)
