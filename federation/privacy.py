"""Member-level differential privacy for a federation (`fed host --dp`): DP-FedAvg.

Each member clips its update (its weights minus the global weights it received) to an L2
norm `clip` (Flower's compute_clip_model_update), before signing and, under SecAgg+, before
masking; members are weighted equally. The host adds Gaussian noise of standard deviation
noise_multiplier x clip / members to each round's average (Flower's compute_stdv and
add_gaussian_noise_inplace): the released global model is private with respect to one
member's whole contribution. The noise multiplier is calibrated with dp-accounting (RDP,
trainers/privacy/accounting.py) so that all planned rounds together spend at most the
configured epsilon at delta; `spent(r)` is what rounds 1..r have spent.

What stays exact, and is said so by the record's `protected: training`: the members'
evaluation metrics (the published curve). Nothing here touches data or the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

__all__ = ["ACCOUNTANT", "PROTECTED", "CentralNoise", "calibrate", "clip_update"]

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


@dataclass(frozen=True)
class CentralNoise:
    """The host's half of DP-FedAvg: noise on each round's average, and the accounting."""

    noise_multiplier: float
    clip: float
    delta: float

    def add(self, arrays: ArrayRecord, members: int) -> ArrayRecord:
        """arrays (the average of `members` clipped updates) with the round's noise added."""
        from flwr.supercore.differential_privacy import add_gaussian_noise_inplace, compute_stdv

        keys = list(arrays.keys())
        values = [arrays[k].numpy().copy() for k in keys]
        add_gaussian_noise_inplace(
            values, compute_stdv(self.noise_multiplier, self.clip, max(members, 1))
        )
        return ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(keys, values, strict=True)})

    def spent(self, rounds: int) -> float:
        """Epsilon (at delta) that rounds 1..rounds have spent."""
        from gridpoint.trainers.privacy.accounting import epsilon_of

        if rounds < 1:
            return 0.0
        return epsilon_of(_rounds_event(self.noise_multiplier, rounds), self.delta, ACCOUNTANT)


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
