"""`gridpoint tune` as a service: a study run on the trainers, its trials published, its priors.

The code is organized as follows:

- study_run.py: run_tune(), the one function the `tune` command calls: the study run on the
  trainers, each trial to the publishing service, the kept models, the warm-start report.
- warm_search.py: a study's warm start: priors chosen once the task is known, the transfer
  sampler and curve pruner built from them, and the report of what was used.
- privacy.py: a private study's mode (its own or the node's default), its charge to its
  pipeline's budget ledger before it runs, its records' guarantee; `privacy ledger`.
- warm_start.py: prior studies from the catalog for a new study (`from_catalog()` for
  users' own Optuna code).

With publishing/anonymize.py, the only part of node that imports gridpoint.trainers, and only
inside the commands that run studies.
"""
