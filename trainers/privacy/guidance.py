"""Whether DP-SGD at the noise a budget forces can still learn: one figure, and a warning.

DP-SGD clips each example's gradient to max_grad_norm (C) and adds Gaussian noise of
sigma x C to their sum; over an expected batch of B = q x rows examples, a step's mean
gradient carries a signal of norm at most C and a noise of norm about sigma x C x sqrt(d) / B
over d trainable parameters. Over T steps the signals add up (T x C at most) and the noises
only as sqrt(T): `noise_to_signal` is sigma x sqrt(d) / (B x sqrt(T)), the run's noise over the
most it could learn. bench/privacy_cost.py measured where learning stops (bench/RESULTS.md):
0.07 and below learnt, 0.11 barely beat the majority class, 0.14 and above learnt nothing, on
LoRA and on a classifier head alike. `advice` says so in one line, with what to change.

Computes from numbers only; never imports torch or opacus, never decides for the study.
"""

from __future__ import annotations

import math

__all__ = ["LEARNABLE_RATIO", "advice", "noise_to_signal"]

#: Above this noise-to-signal figure a DP-SGD run is warned that it will likely learn nothing.
LEARNABLE_RATIO = 0.1


def noise_to_signal(
    noise_multiplier: float, sample_rate: float, rows: int, trainable: int, steps: int
) -> float:
    """The norm of DP-SGD's noise over a run of `steps` over the most signal it can carry."""
    batch = max(sample_rate * rows, 1.0)
    return noise_multiplier * math.sqrt(max(trainable, 1)) / (batch * math.sqrt(max(steps, 1)))


def advice(
    noise_multiplier: float,
    sample_rate: float,
    rows: int,
    trainable: int,
    steps: int,
    head_only: bool = False,
) -> str | None:
    """A one-line warning when the noise drowns what the run can learn (None: it can learn);
    head_only: the run trains its head alone already (not advised again)."""
    ratio = noise_to_signal(noise_multiplier, sample_rate, rows, trainable, steps)
    if ratio <= LEARNABLE_RATIO:
        return None
    fewer = (
        "" if head_only else "train fewer ([training] trainable = 'head', or a smaller lora_rank), "
    )
    return (
        f"DP-SGD will likely learn nothing: the noise the budget forces (multiplier "
        f"{noise_multiplier:.2f}, expected batch {sample_rate * rows:.0f} of {rows} rows, "
        f"{steps} steps) is {ratio:.2f} of the most the run can learn over {trainable:,} "
        f"trainable parameters (above {LEARNABLE_RATIO} learnt nothing in bench/RESULTS.md); "
        f"{fewer}raise batch_size or epsilon, run fewer trials, or add rows"
    )
