"""The owner's control over what it shared: withdraw, sharing policy, key rotation and
revocation, and the outbound ledger (issue 25); and introductions (issue 29).

The code is organized as follows:

- statements.py: tombstones, key rotations, revocations, vouches and unvouches on the wire:
  signing them, and the one verification rule of each type (RULES).
- gate.py: what a node admits, records and statements alike: trusted identities across
  key rotations, introduced authors (when sync follows them), revoked and retired keys, a
  record's signed audience.
- introductions.py: which authors vouches introduce, at which depth (pure).
- vouching.py: `trust vouch|unvouch|list`: this node's vouches, and whom it follows.
- withdraw.py: `catalog withdraw`: tombstones for chosen records of this node's chain.
- keys.py: `identity rotate` and `identity revoke`: the home's key files, the retired TLS
  certificates a node still presents while its peers re-pin, revocation certificates.
- policy.py: the sharing policy of config.toml ([sharing]): groups, rules, their checks
  (naming the line), and reloading it without a restart.
- sharing.py: the serving side: which records a peer receives under the policy and the
  audiences (a signed variant per audience and parts), and what the ledger notes.
- explain.py: `policy explain PEER`: what a peer receives and why, rule by rule.
- ledger.py: the outbound ledger: appending what left, rolling it up, reading it back.

Must never send a statement's or record's payload to the ledger, widen a record's signed
audience, or let a refused statement change anything stored.
"""
