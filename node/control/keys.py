"""`identity rotate` and `identity revoke`: a node's keys move on, and its peers follow.

Rotating makes a new identity key and TLS certificate, signs the rotation with both keys,
stores it (sync carries it to peers, who re-key their trusted entry and re-pin), and puts
the new files in place. The old identity key is deleted; the old TLS pair moves to
HOME/retired/ and is still presented, for home.RETIRED_TLS_DAYS, to a caller that asks for the
old node id (TLS SNI), so a peer that has not heard of the rotation yet can still connect and
hear of it. Revoking publishes a revocation: a certificate written at `init` (for the key it
names), or, with the live key, a rotation followed by the revocation of the old key signed
by the new one.

Must never run while a daemon holds the home (it signs with the key in memory), nor leave a
private key readable by anyone but the owner.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridpoint.errors import ConfigError, EnvelopeError, HomeError
from gridpoint.node.control.gate import Gate
from gridpoint.node.control.statements import (
    read_revocation_certificate,
    revocation_certificate,
    sign_revocation,
    sign_rotation,
)
from gridpoint.node.home import NodeHome
from gridpoint.node.home_lock import running_daemon
from gridpoint.node.protocol.identity import NodeIdentity, write_private_file
from gridpoint.node.protocol.tls import fingerprint, make_tls_material
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.control_base import KeyRevocation, StoredStatement
from gridpoint.v1 import envelope_pb2

__all__ = [
    "Revoked",
    "Rotated",
    "revoke_live",
    "revoke_with_certificate",
    "rotate",
]


@dataclass(frozen=True)
class Rotated:
    """A rotation done: the ids, the new TLS fingerprint, the new revocation certificate."""

    old_id: str
    new_id: str
    fingerprint: str
    certificate: Path
    statement_id: str


@dataclass(frozen=True)
class Revoked:
    """A revocation stored: the key revoked, whether it was this node's current key."""

    revoked_id: str
    statement_id: str
    current: bool
    rotated: Rotated | None = None


def _admit_own(store: CatalogStore, self_id: str, statement: StoredStatement) -> None:
    """Checks this node's own statement by the rules its peers apply, then stores it."""
    Gate.load(store, self_id).admit(envelope_pb2.SignedEnvelope.FromString(statement.envelope))
    store.add_statements([statement])


def _replace_private(path: Path, write: Callable[[Path], None]) -> None:
    fresh = path.with_name(f".{path.name}.new")
    fresh.unlink(missing_ok=True)
    write(fresh)
    os.replace(fresh, path)


def rotate(home: NodeHome, store: CatalogStore) -> Rotated:
    """Moves the node to a new identity key and TLS certificate; peers follow by sync."""
    running = running_daemon(home.path)
    if running is not None:
        raise HomeError(
            f"a node daemon runs on this home (PID {running.pid}): stop it, rotate, start it again"
        )
    old = home.identity
    new = NodeIdentity.generate()
    tls = make_tls_material(new.node_id, home.config.name)
    statement = sign_rotation(old, new, tls.cert_pem)
    _admit_own(store, old.node_id, statement)
    retired = home.retired_tls_path
    retired.mkdir(mode=0o700, exist_ok=True)
    os.replace(home.tls_key_path, retired / f"tls-{old.node_id}.key")
    os.replace(home.tls_cert_path, retired / f"tls-{old.node_id}.crt")
    home.tls_cert_path.write_bytes(tls.cert_pem)
    _replace_private(home.tls_key_path, lambda p: write_private_file(p, tls.key_pem))
    _replace_private(home.identity_path, new.save)
    certificate = home.revocation_path(new.node_id)
    write_private_file(certificate, revocation_certificate(new))
    return Rotated(old.node_id, new.node_id, fingerprint(tls.cert_pem), certificate, statement.id)


def revoke_with_certificate(home: NodeHome, store: CatalogStore, path: Path) -> Revoked:
    """Publishes the revocation a certificate holds (checked like any peer checks it)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path.name}: {exc.strerror}") from None
    envelope = read_revocation_certificate(text)
    self_id = home.identity.node_id
    outcome = Gate.load(store, self_id).admit(envelope)
    if not isinstance(outcome, StoredStatement) or not isinstance(outcome.statement, KeyRevocation):
        raise EnvelopeError("the certificate does not hold a key revocation")
    store.add_statements([outcome])
    revoked = outcome.statement.revoked_id
    return Revoked(revoked, outcome.id, current=revoked == self_id)


def revoke_live(home: NodeHome, store: CatalogStore, reason: str) -> Revoked:
    """Rotates to a new key, then revokes the old one with the new key's signature."""
    old_key = home.identity.public_key
    rotated = rotate(home, store)
    new = NodeHome(home.path).identity
    statement = sign_revocation(new, old_key, reason or "revoked by its owner")
    _admit_own(store, new.node_id, statement)
    return Revoked(rotated.old_id, statement.id, current=False, rotated=rotated)
