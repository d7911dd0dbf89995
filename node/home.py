"""The node home: one folder holding a node's identity, TLS material, secret, config and store.

Layout (private files are 0600, the folder 0700):

    identity.key   Ed25519 identity (PKCS#8 PEM)        private
    tls.key        TLS private key (PKCS#8 PEM)          private
    tls.crt        self-signed TLS certificate (PEM)     public, pinned by peers
    node.secret    32 random bytes keying pseudonyms     private
    config.toml    settings, see node/config.py
    catalog.db     the SQLite store (unless a --db URL is used)
    revocation-ID.cert  a pre-signed revocation of key ID, to move offline  private
    retired/       TLS pairs of keys rotated away (control/keys.py)     private

Never prints or returns secret bytes to anything but the code that signs or pseudonymizes.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from gridpoint.errors import ConfigError, HomeError
from gridpoint.node.config import NodeConfig, render_default_config
from gridpoint.node.protocol.identity import NodeIdentity, write_private_file
from gridpoint.node.protocol.revocation import revocation_certificate
from gridpoint.node.protocol.tls import TlsMaterial, fingerprint, make_tls_material

__all__ = ["RETIRED_TLS_DAYS", "STUDIES_SCHEMA", "NodeHome", "resolve_home"]

HOME_ENV = "GRIDPOINT_HOME"
#: Days a retired TLS certificate is still presented to callers that ask for its old node id.
RETIRED_TLS_DAYS = 30
#: The PostgreSQL schema of a node's Optuna studies (trainers/study_storage.py creates it).
STUDIES_SCHEMA = "optuna"


def resolve_home(cli_value: str | None) -> NodeHome:
    """The home named by --home, else by $GRIDPOINT_HOME; an error if neither is set."""
    value = cli_value or os.environ.get(HOME_ENV)
    if not value:
        raise ConfigError(f"no node home: pass --home DIR or set {HOME_ENV}")
    return NodeHome(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class NodeHome:
    """Paths and loaders for one node home."""

    path: Path

    @property
    def identity_path(self) -> Path:
        return self.path / "identity.key"

    @property
    def tls_key_path(self) -> Path:
        return self.path / "tls.key"

    @property
    def tls_cert_path(self) -> Path:
        return self.path / "tls.crt"

    @property
    def secret_path(self) -> Path:
        return self.path / "node.secret"

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def sqlite_path(self) -> Path:
        return self.path / "catalog.db"

    def revocation_path(self, node_id: str) -> Path:
        """A key's revocation certificate (written by `init` and `identity rotate`)."""
        return self.path / f"revocation-{node_id}.cert"

    @property
    def retired_tls_path(self) -> Path:
        return self.path / "retired"

    def retired_tls_pairs(self) -> list[tuple[bytes, bytes]]:
        """(key, certificate) of the TLS pairs retired by a key rotation in the last
        RETIRED_TLS_DAYS: still presented to peers that ask for the old node id."""
        horizon = time.time() - RETIRED_TLS_DAYS * 86400
        folder = self.retired_tls_path
        pairs = []
        for cert in sorted(folder.glob("tls-*.crt")) if folder.is_dir() else []:
            key = cert.with_suffix(".key")
            if key.exists() and cert.stat().st_mtime >= horizon:
                pairs.append((key.read_bytes(), cert.read_bytes()))
        return pairs

    def init(self, name: str) -> NodeIdentity:
        """Creates identity, TLS material, secret and config; refuses an existing identity."""
        if not name.strip():
            raise ConfigError("--name must not be empty")
        if self.identity_path.exists():
            raise HomeError(f"{self.path} already holds a node identity; refusing to overwrite it")
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        identity = NodeIdentity.generate()
        tls = make_tls_material(identity.node_id, name)
        identity.save(self.identity_path)
        write_private_file(self.revocation_path(identity.node_id), revocation_certificate(identity))
        write_private_file(self.tls_key_path, tls.key_pem)
        write_private_file(self.secret_path, secrets.token_bytes(32))
        self.tls_cert_path.write_bytes(tls.cert_pem)
        self.config_path.write_text(render_default_config(name))
        return identity

    def check(self) -> None:
        """HomeError unless this home holds a node: one message, whatever is missing (the
        folder, or the node in it), naming the folder and the command that makes one."""
        if not self.path.is_dir() or not self.identity_path.exists():
            raise HomeError(
                f"no node at {self.path}: create one with "
                f"`gridpoint --home {self.path} init --name ORG`"
            )

    @cached_property
    def identity(self) -> NodeIdentity:
        self.check()
        return NodeIdentity.load(self.identity_path)

    @cached_property
    def config(self) -> NodeConfig:
        self.check()
        return NodeConfig.load(self.config_path)

    @classmethod
    def with_config(cls, path: Path, config: NodeConfig) -> NodeHome:
        """The home at path holding config (loaded and checked by another process), never
        its file read again: a process working for a daemon answers under the daemon's
        settings, not under an edit made since the daemon started."""
        home = cls(path)
        home.__dict__["config"] = config  # where cached_property keeps what it loaded
        return home

    @cached_property
    def tls(self) -> TlsMaterial:
        try:
            return TlsMaterial(self.tls_key_path.read_bytes(), self.tls_cert_path.read_bytes())
        except FileNotFoundError as exc:
            raise HomeError(f"{self.path} has no TLS material: run `gridpoint init`") from exc

    @property
    def tls_fingerprint(self) -> str:
        return fingerprint(self.tls.cert_pem)

    @cached_property
    def secret(self) -> bytes:
        try:
            return self.secret_path.read_bytes()
        except FileNotFoundError as exc:
            raise HomeError(f"{self.path} has no node secret: run `gridpoint init`") from exc

    def db_url(self, override: str | None = None) -> str:
        """--db if given, else the config's store.url, else the home's SQLite file."""
        return override or self.config.store.url or f"sqlite:///{self.sqlite_path}"

    def studies_url(self, override: str | None = None) -> str:
        """The Optuna storage of this node's studies, a plain Optuna RDB storage.

        Beside a PostgreSQL store the studies share its database in a schema of their own
        (STUDIES_SCHEMA, named in the URL, so every reader — tune, the UI, optuna-dashboard —
        finds them: Optuna and the store each keep an `alembic_version` table); beside the
        default SQLite store they get their own file, studies.db, so that tuning never
        contends with the catalog for SQLite's single writer.
        """
        url = self.db_url(override)
        if url.startswith(("postgresql", "postgres")):
            return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{STUDIES_SCHEMA}"
        return f"sqlite:///{self.path / 'studies.db'}"
