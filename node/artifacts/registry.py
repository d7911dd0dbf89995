"""The model registry: names with numbered versions (each an artifact held here) and aliases.

`register` gives an artifact the next version of a name (1, 2, ...; a number is never given
twice); `set_alias` points an alias (champion, staging, ...) at a version, `remove_alias`
drops it; `resolve` reads `NAME@ALIAS`, `NAME@VERSION` or `NAME@latest`. Aliases named in
config.toml's `[registry] protected_aliases` are moved or removed only with force. After an
alias changes, the promotion hook (hooks.py) runs with the event; the change is committed
first, so a hook never blocks or undoes it.

Names, versions and aliases are this node's own: never in a record, a manifest, a log line a
peer can cause, or any answer to a peer. A registered artifact cannot be removed (the store
refuses; retention passes it by) until its version is deregistered, and a version an alias
points at cannot be deregistered.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from gridpoint.errors import ConfigError, ProtectedAlias, RegistryError
from gridpoint.node.artifacts.hooks import HookOutcome, run_hook
from gridpoint.node.artifacts.store import Artifact, ArtifactStore
from gridpoint.node.config import RegistryConfig
from gridpoint.node.store.models import MODEL_ALIASES, MODEL_VERSIONS, REGISTERED_MODELS
from gridpoint.node.store.sql_rows import as_utc
from gridpoint.node.store.sql_store import SqlStore

__all__ = ["LATEST", "AliasChange", "ModelVersion", "Registry", "is_reference"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_VERSION_LIKE = re.compile(r"v?[0-9]+")
#: The alias-like word that always means a name's newest version.
LATEST = "latest"
_FEW = 1000


def is_reference(text: str) -> bool:
    """Whether text names a registered model (`NAME@...`) rather than an artifact id."""
    return "@" in text


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered name, its artifact and the aliases pointing at it."""

    name: str
    version: int
    artifact: Artifact
    aliases: tuple[str, ...]
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class AliasChange:
    """What one alias command did: where the alias points now (None: removed) and before."""

    event: str  # "alias_set" | "alias_removed"
    name: str
    alias: str
    version: int | None
    previous: int | None
    protected: bool
    artifact: Artifact
    #: The promotion hook's outcome; None when no hook is configured or nothing changed.
    hook: HookOutcome | None = None

    @property
    def changed(self) -> bool:
        return self.version != self.previous


class Registry:
    """The registered names of one node; every call is its own transaction."""

    def __init__(
        self, artifacts: ArtifactStore, store: SqlStore, config: RegistryConfig, node_id: str
    ) -> None:
        for alias in config.protected_aliases:
            _check_alias(alias, "config.toml [registry] protected_aliases:")
        self._artifacts = artifacts
        self._sql = store
        self._config = config
        self._node_id = node_id

    def is_protected(self, alias: str) -> bool:
        return alias in self._config.protected_aliases

    # --- versions -------------------------------------------------------------------------

    def register(self, name: str, artifact_ref: str) -> tuple[ModelVersion, bool]:
        """The artifact as the next version of name (created True), or the version it
        already is of that name (created False)."""
        _check_name(name)
        artifact = self.artifact(artifact_ref)
        now = datetime.now(UTC)
        with self._sql.writing() as conn:
            present = conn.execute(
                select(MODEL_VERSIONS.c.version).where(
                    MODEL_VERSIONS.c.name == name, MODEL_VERSIONS.c.artifact_id == artifact.id
                )
            ).scalar()
            if present is not None:
                version, created = int(present), False
            else:
                last = conn.execute(
                    select(REGISTERED_MODELS.c.last_version).where(REGISTERED_MODELS.c.name == name)
                ).scalar()
                version, created = int(last or 0) + 1, True
                if last is None:
                    conn.execute(
                        insert(REGISTERED_MODELS).values(name=name, last_version=1, created_at=now)
                    )
                else:
                    conn.execute(
                        update(REGISTERED_MODELS)
                        .where(REGISTERED_MODELS.c.name == name)
                        .values(last_version=version)
                    )
                conn.execute(
                    insert(MODEL_VERSIONS).values(
                        name=name, version=version, artifact_id=artifact.id, created_at=now
                    )
                )
        return self.version(name, version), created

    def deregister(self, name: str, version: int) -> ModelVersion:
        """Takes a version off name (its artifact stays held); refused while an alias
        points at it."""
        gone = self.version(name, version)
        if gone.aliases:
            raise RegistryError(
                f"{gone.ref} is {', '.join(f'{name}@{a}' for a in gone.aliases)}: "
                "move or remove the alias first (`gridpoint model alias ...`)"
            )
        with self._sql.writing() as conn:
            conn.execute(
                delete(MODEL_VERSIONS).where(
                    MODEL_VERSIONS.c.name == name, MODEL_VERSIONS.c.version == version
                )
            )
        return gone

    def version(self, name: str, version: int) -> ModelVersion:
        """One version of name; RegistryError when there is none."""
        found = self._load(name, version)
        if not found:
            self.versions(name)  # says so when the name itself is unknown
            raise RegistryError(f"{name} has no version {version} (see `gridpoint model list`)")
        return found[0]

    def versions(
        self, name: str | None = None, *, held: Sequence[Artifact] | None = None
    ) -> list[ModelVersion]:
        """Every registered version (or those of one name), by name then version; held, the
        artifacts a caller listed already, saves listing them again."""
        found = self._load(name, held=held)
        if name is not None and not found:
            raise RegistryError(f"no model is registered as {name} (see `gridpoint model list`)")
        return found

    def _load(
        self,
        name: str | None,
        version: int | None = None,
        held: Sequence[Artifact] | None = None,
        artifact_id: str | None = None,
    ) -> list[ModelVersion]:
        if name is not None:
            _check_name(name)
        with self._sql.reading() as conn:
            rows = _version_rows(conn, name, version, artifact_id)
            aliases = _aliases(conn, name)
        # A few versions: their artifacts one by one; many: every artifact in one read.
        if held is not None or len(rows) > _FEW:
            by_id = {a.id: a for a in (self._artifacts.list() if held is None else held)}
        else:
            by_id = {r.artifact_id: self._artifacts.get(r.artifact_id) for r in rows}
        return [
            ModelVersion(
                name=r.name,
                version=r.version,
                artifact=by_id[r.artifact_id],
                aliases=tuple(sorted(aliases.get((r.name, r.version), ()))),
                created_at=as_utc(r.created_at),
            )
            for r in rows
        ]

    def versions_of(self, artifact: Artifact) -> list[ModelVersion]:
        """The versions (of any name) an artifact is registered as."""
        return self._load(None, artifact_id=artifact.id)

    # --- references -----------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelVersion:
        """The version `NAME@ALIAS`, `NAME@VERSION` or `NAME@latest` names."""
        name, _, which = ref.partition("@")
        _check_name(name)
        if which.startswith("v") and which[1:].isdigit():
            which = which[1:]
        if which.isdigit():
            return self.version(name, int(which))
        if which != LATEST:
            _check_alias(which, f"{ref[:120]!r}:")
        with self._sql.reading() as conn:
            if which == LATEST:
                found = conn.execute(
                    select(func.max(MODEL_VERSIONS.c.version)).where(MODEL_VERSIONS.c.name == name)
                ).scalar()
            else:
                found = _alias_version(conn, name, which)
            known = sorted(_aliases_of(conn, name)) if found is None else []
        if found is None:
            if which == LATEST:
                self.versions(name)  # no version: says the name is unknown
            raise RegistryError(
                f"{name} has no alias {which}"
                + (f" (its aliases: {', '.join(known)})" if known else "")
            )
        return self.version(name, int(found))

    def artifact(self, ref: str) -> Artifact:
        """The artifact an id, unique id prefix or `NAME@...` reference names."""
        return self.resolve(ref).artifact if is_reference(ref) else self._artifacts.get(ref)

    # --- aliases --------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, force: bool = False) -> AliasChange:
        """Points alias at a version of name; moving a protected alias needs force. Runs
        the promotion hook when the alias changed."""
        _check_alias(alias, "")
        target = self.version(name, version)
        protected = self.is_protected(alias)
        with self._sql.writing() as conn:
            previous = _alias_version(conn, name, alias)
            if previous is not None and previous != version and protected and not force:
                raise ProtectedAlias(
                    f"{alias} is a protected alias of {name} (now version {previous}): "
                    f"pass --force to move it to version {version}"
                )
            if previous is None:
                conn.execute(
                    insert(MODEL_ALIASES).values(
                        name=name, alias=alias, version=version, set_at=datetime.now(UTC)
                    )
                )
            elif previous != version:
                conn.execute(
                    update(MODEL_ALIASES)
                    .where(MODEL_ALIASES.c.name == name, MODEL_ALIASES.c.alias == alias)
                    .values(version=version, set_at=datetime.now(UTC))
                )
        change = AliasChange(
            "alias_set", name, alias, version, previous, protected, target.artifact
        )
        return self._announce(change)

    def remove_alias(self, name: str, alias: str, *, force: bool = False) -> AliasChange:
        """Drops alias from name; a protected alias needs force. Runs the promotion hook."""
        _check_name(name)
        _check_alias(alias, "")
        protected = self.is_protected(alias)
        with self._sql.writing() as conn:
            previous = _alias_version(conn, name, alias)
            if previous is None:
                raise RegistryError(f"{name} has no alias {alias}")
            if protected and not force:
                raise ProtectedAlias(
                    f"{alias} is a protected alias of {name} (version {previous}): "
                    "pass --force to remove it"
                )
            conn.execute(
                delete(MODEL_ALIASES).where(
                    MODEL_ALIASES.c.name == name, MODEL_ALIASES.c.alias == alias
                )
            )
        artifact = self.version(name, previous).artifact
        change = AliasChange("alias_removed", name, alias, None, previous, protected, artifact)
        return self._announce(change)

    def _announce(self, change: AliasChange) -> AliasChange:
        if not change.changed or not self._config.on_promotion:
            return change
        artifact = change.artifact
        event = {
            "event": change.event,
            "model": change.name,
            "alias": change.alias,
            "version": change.version,
            "previous_version": change.previous,
            "protected": change.protected,
            "artifact": {
                "id": artifact.id,
                "kind": artifact.kind,
                "method": artifact.method,
                "base_model": artifact.base_model,
                "record": artifact.record_id,
                "score": artifact.score,
                "metric": artifact.metric,
                "path": str(self._artifacts.folder(artifact)),
            },
            "node_id": self._node_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        outcome = run_hook(
            self._config.on_promotion,
            event,
            self._config.hook_timeout_s,
            label=f"{change.name}@{change.alias}",
        )
        return dataclasses.replace(change, hook=outcome)


def _version_rows(
    conn: Connection, name: str | None, version: int | None, artifact_id: str | None
) -> list[_Row]:
    stmt = select(
        MODEL_VERSIONS.c.name,
        MODEL_VERSIONS.c.version,
        MODEL_VERSIONS.c.artifact_id,
        MODEL_VERSIONS.c.created_at,
    ).order_by(MODEL_VERSIONS.c.name, MODEL_VERSIONS.c.version)
    if name is not None:
        stmt = stmt.where(MODEL_VERSIONS.c.name == name)
    if version is not None:
        stmt = stmt.where(MODEL_VERSIONS.c.version == version)
    if artifact_id is not None:
        stmt = stmt.where(MODEL_VERSIONS.c.artifact_id == artifact_id)
    return [_Row(*r) for r in conn.execute(stmt)]


@dataclass(frozen=True)
class _Row:
    name: str
    version: int
    artifact_id: str
    created_at: datetime


def _aliases(conn: Connection, name: str | None) -> dict[tuple[str, int], list[str]]:
    stmt = select(MODEL_ALIASES.c.name, MODEL_ALIASES.c.version, MODEL_ALIASES.c.alias)
    if name is not None:
        stmt = stmt.where(MODEL_ALIASES.c.name == name)
    out: dict[tuple[str, int], list[str]] = {}
    for n, v, a in conn.execute(stmt):
        out.setdefault((n, v), []).append(a)
    return out


def _alias_version(conn: Connection, name: str, alias: str) -> int | None:
    found = conn.execute(
        select(MODEL_ALIASES.c.version).where(
            MODEL_ALIASES.c.name == name, MODEL_ALIASES.c.alias == alias
        )
    ).scalar()
    return None if found is None else int(found)


def _aliases_of(conn: Connection, name: str) -> list[str]:
    return list(conn.scalars(select(MODEL_ALIASES.c.alias).where(MODEL_ALIASES.c.name == name)))


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise RegistryError(
            f"{name[:120]!r} is not a model name: 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _check_alias(alias: str, where: str) -> None:
    if not _ALIAS.fullmatch(alias) or alias == LATEST or _VERSION_LIKE.fullmatch(alias):
        error = ConfigError if where.startswith("config") else RegistryError
        raise error(
            f"{where} {alias[:70]!r} is not an alias: 1-64 lowercase letters, digits, '_' or "
            f"'-', starting with a letter; not {LATEST!r} and not a version like 'v3'".strip()
        )
