"""What leaves this node as a record, and the one way it does.

The code is organized as follows:

- service.py: the publishing service: a typed private run from any source (`tune`, the
  integrations, `fed host`) anonymized, signed and stored with its private part in one
  transaction; its model kept when asked; `gridpoint publish`'s written records pseudonymized.
- anonymize.py: the allowlist: a private run -> its public RunRecord, field by field under
  the node's [anonymizer] policy; which metrics are public, and their ranges.

Imports the trainers' hyperparameter vocabulary (KNOWN_PARAMS) and nothing else of them;
never imported by the daemon.
"""
