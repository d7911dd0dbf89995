"""Differential privacy for what a study publishes: DP-SGD, released evaluation values, accounting.

The code is organized as follows:

- spec.py: a study's privacy mode (the `[privacy]` table): epsilon, delta, what is protected,
  the accountant, how trials are published; checked before anything trains.
- accounting.py: the study's privacy ledger of mechanisms as dp-accounting events (DP-SGD
  trials, Gaussian releases, "repeat and publish the best"), their epsilon by RDP or PLD, and
  each trial's noise calibrated to its share of the budget.
- release.py: the Gaussian mechanism that releases evaluation values (sensitivity from the
  evaluation set's size); the study's sampler, pruner and records see only its output.
- guidance.py: whether DP-SGD can learn at the noise a budget forces (noise over signal per
  step), and the one-line warning when it cannot.
- dpsgd.py: DP-SGD through Opacus (per-example clipping, Poisson sampling, calibrated noise)
  for the fine-tuning loop, LoRA or full, on CPU or GPU.

Imports torch and opacus only in dpsgd.py, inside its functions; nothing here knows of nodes.
"""
