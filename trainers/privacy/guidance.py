"""Whether DP-SGD at the noise a budget forces can still learn: one figure, and a warning.

DP-SGD clips each example's gradient to max_grad_norm (C) and adds Gaussian noise of
sigma x C to their sum; over an expected batch of B = q x rows examples, the mean gradient
carries a signal of norm at most C and a noise of norm about sigma x C x sqrt(d) / B over d
trainable parameters. Their ratio, sigma x sqrt(d) / B, is `noise_to_signal`: above 1 each
step is noise more than anything it could have learnt, and over a few dozen steps the
optimizer walks the weights at random (bench/privacy_cost.py measured where learning stops:
bench/RESULTS.md). `advice` says so in one line, with what to change.

Computes from numbers only; never imports torch or opacus, never decides for the study.
"""

from __future__ import annotations

import math

__all__ = ["LEARNABLE_RATIO", "advice", "noise_to_signal"]

#: Above this noise-to-signal ratio a DP-SGD run is warned that it will likely learn nothing.
LEARNABLE_RATIO = 1.0


def noise_to_signal(
    noise_multiplier: float, sample_rate: float, rows: int, trainable: int
) -> float:
    """The norm of DP-SGD's noise on a step's mean gradient over the largest signal it has."""
    batch = max(sample_rate * rows, 1.0)
    return noise_multiplier * math.sqrt(max(trainable, 1)) / batch


def advice(noise_multiplier: float, sample_rate: float, rows: int, trainable: int) -> str | None:
    """A one-line warning when the noise drowns what a step can learn (None: it can learn)."""
    ratio = noise_to_signal(noise_multiplier, sample_rate, rows, trainable)
    if ratio <= LEARNABLE_RATIO:
        return None
    return (
        f"DP-SGD will likely learn nothing: the noise the budget forces (multiplier "
        f"{noise_multiplier:.2f}, expected batch {sample_rate * rows:.0f} of {rows} rows) is "
        f"{ratio:.1f} times the largest signal of a step over {trainable:,} trainable "
        f"parameters; train fewer (lora_rank, or only the head), raise batch_size or epsilon, "
        f"run fewer trials, or add rows"
    )
