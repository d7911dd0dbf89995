"""Warm-start maths: tuning a new study from prior studies of related tasks.

The code is organized as follows:

- priors.py: PriorStudy and PriorTrial, the priors as these methods see them.
- matching.py: which parameter of a prior is which dimension of the study (names, kinds,
  ranges), with how each was matched.
- space.py: the study's search space as the unit cube; a prior's trials placed in it
  (clipped, dropped or marginalized, and counted).
- reliability.py: how much of a prior's spread is release noise (private priors), and the
  trust left to it.
- copula.py: the Gaussian copula that puts every task's objective on one scale.
- surrogate.py: a prior study's mean surface and the new study's own GP.
- rgpe.py: RGPE's ranking-loss weights of each prior and of the study's own model.
- ensemble.py: the ranking-weighted ensemble (RGPE-style) that proposes each point.
- initial_design.py: the priors' best configurations first (SageMaker-style).
- sampler.py: WarmStartSampler, the Optuna sampler over all of the above.
- pruner.py: CurvePruner, stopping trials whose curves fall below the priors'.

Works on arrays, Optuna and plain dataclasses only: knows nothing of nodes, catalogs or where
priors come from (gridpoint.node.tuning.warm_start builds them from the catalog).
"""
