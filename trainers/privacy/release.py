"""Released evaluation values: the Gaussian mechanism with respect to the evaluation rows.

An evaluation value of known sensitivity (accuracy: one row added, removed or replaced moves
it by at most 1/n over n rows) is released as value + N(0, (sigma x sensitivity)^2), then
clamped to the metric's range (post-processing, free). Values without a sensitivity bound are
not released at all. The noise comes from the operating system's entropy, never from a seed
a study file names: a reproducible noise would be a removable one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from gridpoint.trainers.privacy.spec import RELEASABLE_METRICS, PrivacySpec

__all__ = ["EvaluationRelease", "clamp"]

#: The range a released value is clamped to.
_RANGES: dict[str, tuple[float, float]] = {"accuracy": (0.0, 1.0)}


def clamp(metric: str, value: float) -> float:
    """value within the metric's range."""
    low, high = _RANGES.get(metric, (float("-inf"), float("inf")))
    return min(max(value, low), high)


class EvaluationRelease:
    """Releases one trial's evaluation values under a privacy mode.

    noise: the trial's noise multiplier for evaluation values (None: the evaluation rows are
    not protected, values pass exactly). eval_rows: the evaluation set's size.
    """

    def __init__(self, spec: PrivacySpec, noise: float | None, eval_rows: int) -> None:
        self._spec, self._noise, self._rows = spec, noise, max(eval_rows, 1)
        self._rng = random.SystemRandom()
        self.releases = 0

    def sensitivity(self, metric: str) -> float:
        """How far one evaluation row can move the metric."""
        return RELEASABLE_METRICS[metric] / self._rows

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The released values of one evaluation: noised, or left out when not releasable."""
        keep = self._spec.released_metrics(set(metrics))
        out = {}
        for name in sorted(keep):
            value = metrics[name]
            if self._noise is not None and name in RELEASABLE_METRICS:
                scale = self._noise * self.sensitivity(name)
                value = clamp(name, value + self._rng.gauss(0.0, scale))
            out[name] = value
        self.releases += 1
        return out
