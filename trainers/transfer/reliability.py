"""How far a prior's values can be trusted when they were released with noise.

A differentially private study publishes value + N(0, noise²) for each evaluation. A GP with
heteroscedastic noise would treat such observations as noisier: this module gives the two
quantities the transfer model needs for that, from the noise's standard deviation and the
prior's own values:

- `noise_share`: the share of the values' spread that is release noise (noise² over the
  values' variance, at most 1). In the copula space the values have unit variance, so this is
  the observation-noise variance the prior's surface is fitted with: a noisy prior's surface is
  smoothed instead of interpolating its noise.
- `reliability`: 1 - noise_share, the share that is signal. A prior's starting weight is its
  similarity times its reliability: of two priors with the same values, the noisy one is
  trusted less before the new study has observations of its own (after that, the ensemble's
  ranking test judges every prior on what the study observes).

Works on numbers only; knows nothing of privacy accounting or of where the noise came from.
"""

from __future__ import annotations

import numpy as np

__all__ = ["noise_share", "reliability"]


def noise_share(values: np.ndarray, noise: float) -> float:
    """The share of the values' variance that is noise of standard deviation `noise`, in [0, 1]."""
    if noise <= 0:
        return 0.0
    spread = float(np.var(np.asarray(values, dtype=float)))
    if spread <= 0:
        return 1.0
    return float(min(1.0, noise * noise / spread))


def reliability(values: np.ndarray, noise: float) -> float:
    """The share of the values' variance that is signal, in [0, 1] (1: exact values)."""
    return 1.0 - noise_share(values, noise)
