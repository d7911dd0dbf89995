"""Warm-start maths: tuning a new study from prior studies, knowing nothing of nodes.

The code is organized as follows:

- priors.py: prior studies as the transfer methods see them (trials, values, curves).
- space.py: a study's search space as the unit cube, and prior studies mapped into it.
- copula.py: the Gaussian copula that puts every task's objective on one scale.
- surrogate.py: models of one task's objective: the priors' surfaces and the new task's GP.
- ensemble.py: the ranking-weighted ensemble (RGPE-style) of prior surfaces and the target GP.
- initial_design.py: the priors' best configurations, evaluated first.
- sampler.py: WarmStartSampler, the Optuna sampler over all of the above.
- pruner.py: CurvePruner, which stops a trial whose curve falls below its peers' at a step.

Where prior studies come from is the caller's business (gridpoint's node chooses them from
its catalog: node/tuning/warm_start.py). Imports nothing of gridpoint but the schema.
"""
