"""The Gaussian copula transform that puts every task's objective on one scale.

Tasks differ wildly in their objective's range (an error of 0.01 on one data set is as good
as 0.3 on another). Mapping each task's values through its own empirical CDF and then the
standard normal quantile (Salinas, Shen & Perrone, ICML 2020) makes them comparable: lower
is always better, and values are roughly N(0, 1) whatever the task.

Works on plain arrays; must never look at anything but the values it is given.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata

__all__ = ["gaussian_copula"]


def gaussian_copula(values: np.ndarray, *, minimize: bool = True) -> np.ndarray:
    """Per-task normal scores of `values`: lower is better; ties share a score."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values.copy()
    oriented = values if minimize else -values
    ranks = rankdata(oriented, method="average")
    return np.asarray(norm.ppf((ranks - 0.5) / values.size), dtype=float)
