"""Member-level differential privacy for a federation (`fed host --dp`): DP-FedAvg.

Each member clips its update (its weights minus the global weights it received) to an L2
norm `clip` (Flower's compute_clip_model_update), before signing and, under SecAgg+, before
masking; members are weighted equally. The host adds Gaussian noise of standard deviation
noise_multiplier x clip / members to each round's average (Flower's compute_stdv and
add_gaussian_noise_inplace): the released global model is private with respect to one
member's whole contribution. The noise multiplier is calibrated with dp-accounting (RDP,
trainers/privacy/accounting.py) so that all planned rounds together spend at most the
configured epsilon at delta; `spent(r)` is what rounds 1..r have spent.

With `--dp-adaptive-clip` the clip is not fixed: it follows a quantile of the members' update
norms (Andrew, Thakkar, McMahan & Ramaswamy, NeurIPS 2021). Each member says whether its
update was within the round's clip; the host adds Gaussian noise to that count and moves the
clip geometrically toward the target quantile (`AdaptiveClip`). The count's noise takes a share
of the budget: the updates' noise multiplier rises so that both releases together spend what
the calibrated multiplier alone would (the paper's z^-2 = z_update^-2 + (2 sigma_count)^-2,
Flower's compute_adaptive_noise_params), so the accounting is unchanged.

What stays exact, and is said so by the record's `protected: training`: the members'
evaluation metrics (the published curve). Nothing here touches data or the ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

__all__ = [
    "ACCOUNTANT",
    "PROTECTED",
    "AdaptiveClip",
    "CentralNoise",
    "calibrate",
    "clip_update",
    "within_clip",
]

ACCOUNTANT = "rdp"
#: What a federation's guarantee covers: the model trained on the members' data.
PROTECTED = "training"


def _rounds_event(noise_multiplier: float, rounds: int) -> Any:
    from gridpoint.trainers.privacy.accounting import release_event

    # Every member takes part in every round: no subsampling to amplify privacy.
    return release_event(noise_multiplier, rounds)


def calibrate(epsilon: float, delta: float, rounds: int) -> float:
    """The smallest noise multiplier whose `rounds` Gaussian rounds spend <= epsilon at delta."""
    from gridpoint.trainers.privacy.accounting import calibrate_noise

    return calibrate_noise(lambda z: _rounds_event(z, rounds), epsilon, delta, ACCOUNTANT)


@dataclass
class AdaptiveClip:
    """The clip of the next round, moved after each round toward a quantile of the members'
    update norms by their noisy count of updates within it (see the module docstring)."""

    clip: float
    #: The updates' noise multiplier (above the accountant's: the count takes its share).
    update_multiplier: float
    #: Standard deviation of the Gaussian noise on the count of members within the clip.
    count_stddev: float
    #: The share of members whose update should fit within the clip (0.5: the median).
    target_quantile: float = 0.5
    learning_rate: float = 0.2

    @staticmethod
    def start(clip: float, noise_multiplier: float, members: int) -> AdaptiveClip:
        """Adaptive clipping from `clip`, spending what noise_multiplier alone would.

        The count's noise is Flower's default (members / 20) where that leaves the updates a
        finite multiplier; with few members it is noise_multiplier (the updates' multiplier
        then 2 / sqrt(3) of it).
        """
        from flwr.supercore.differential_privacy import compute_adaptive_noise_params

        stddev = max(members / 20, noise_multiplier)
        count, update = compute_adaptive_noise_params(noise_multiplier, members, stddev)
        return AdaptiveClip(clip, update, count)

    def update(self, within: list[bool]) -> float:
        """The next round's clip, from which of this round's members were within the clip."""
        if within:
            noisy = (sum(within) + np.random.default_rng().normal(0.0, self.count_stddev)) / len(
                within
            )
            self.clip *= math.exp(-self.learning_rate * (noisy - self.target_quantile))
        return self.clip


@dataclass(frozen=True)
class CentralNoise:
    """The host's half of DP-FedAvg: noise on each round's average, and the accounting."""

    noise_multiplier: float
    clip: float
    delta: float
    #: With --dp-adaptive-clip: the clip of the round, and the updates' own multiplier.
    adaptive: AdaptiveClip | None = None

    def add(self, arrays: ArrayRecord, members: int) -> ArrayRecord:
        """arrays (the average of `members` clipped updates) with the round's noise added."""
        from flwr.supercore.differential_privacy import add_gaussian_noise_inplace, compute_stdv

        multiplier, clip = self.noise_multiplier, self.clip
        if self.adaptive is not None:
            multiplier, clip = self.adaptive.update_multiplier, self.adaptive.clip
        keys = list(arrays.keys())
        values = [arrays[k].numpy().copy() for k in keys]
        add_gaussian_noise_inplace(values, compute_stdv(multiplier, clip, max(members, 1)))
        return ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(keys, values, strict=True)})

    def spent(self, rounds: int) -> float:
        """Epsilon (at delta) that rounds 1..rounds have spent."""
        from gridpoint.trainers.privacy.accounting import epsilon_of

        if rounds < 1:
            return 0.0
        return epsilon_of(_rounds_event(self.noise_multiplier, rounds), self.delta, ACCOUNTANT)


def within_clip(new: ArrayRecord, received: ArrayRecord, clip: float) -> bool:
    """Whether the update (new - received) is within L2 norm clip, over every array together."""
    from flwr.supercore.differential_privacy import get_norm

    keys = list(new.keys())
    update = [new[k].numpy().astype(np.float64) - received[k].numpy() for k in keys]
    return bool(get_norm(update) <= clip)


def clip_update(new: ArrayRecord, received: ArrayRecord, clip: float) -> ArrayRecord:
    """new with (new - received) clipped to L2 norm clip, over every array together."""
    from flwr.supercore.differential_privacy import compute_clip_model_update

    keys = list(new.keys())
    values = [new[k].numpy().astype(np.float64) for k in keys]
    compute_clip_model_update(values, [received[k].numpy() for k in keys], clip)
    return ArrayRecord(
        {
            k: Array(np.asarray(v, dtype=new[k].numpy().dtype))
            for k, v in zip(keys, values, strict=True)
        }
    )
