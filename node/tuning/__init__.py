"""Glue between the node and the trainers: what a study's trials become, and its priors.

anonymize.py (private trial -> public RunRecord, by allowlist), warm_start.py (prior studies
from the catalog for a new study; `from_catalog()` for users' own Optuna code).

The only part of node that imports gridpoint.trainers, and only inside the commands that
run studies.
"""
