"""A team's database opened read-only: the only way the importers reach an Optuna or MLflow DB.

SQLite files are opened through SQLite's own read-only mode (`mode=ro`), so no library that
runs on the connection (Optuna's version check, an ORM's table creation) can add a table or a
row to the user's file; a file that is missing, empty or not SQLite is refused before anything
opens it. PostgreSQL connections run every transaction read-only
(`default_transaction_read_only`), enforced by the server. Other databases are refused:
read-only is not something we could promise there.

Must never: create, migrate or write anything in a source, or put its URL (it may hold a
password) in a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from gridpoint.errors import ConfigError

__all__ = ["ReadOnlyDatabase", "read_only"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class ReadOnlyDatabase:
    """A SQLAlchemy URL and engine settings under which every write fails, and what it is."""

    url: str
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    #: "sqlite" or "postgresql".
    dialect: str = "sqlite"

    def engine(self) -> Any:
        """A SQLAlchemy engine on it (the caller disposes of it)."""
        from sqlalchemy import create_engine

        return create_engine(self.url, **self.engine_kwargs)


def _sqlite(url: str, what: str) -> ReadOnlyDatabase:
    raw = url.split("?", 1)[0].removeprefix("sqlite:///")
    if not raw or raw == ":memory:":
        raise ConfigError(f"{what}: an in-memory SQLite database holds nothing to import")
    path = Path(raw).expanduser().absolute()
    if not path.is_file():
        raise ConfigError(f"no SQLite file at {path}")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not head:
        raise ConfigError(f"{path} is an empty file, not {what}")
    if head != _SQLITE_MAGIC:
        raise ConfigError(f"{path} is not a SQLite database, so not {what}")
    # SQLite's URI form: the path percent-encoded, mode=ro refusing every write.
    return ReadOnlyDatabase(f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true", {}, "sqlite")


def _postgresql(url: str) -> ReadOnlyDatabase:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    # connect_args replace the URL's own `options`, so both travel together.
    options = " ".join(
        o for o in (query.pop("options", ""), "-c default_transaction_read_only=on") if o
    )
    scheme = "postgresql+psycopg" if parts.scheme in ("postgresql", "postgres") else parts.scheme
    bare = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
    return ReadOnlyDatabase(bare, {"connect_args": {"options": options}}, "postgresql")


def read_only(url: str, what: str) -> ReadOnlyDatabase:
    """url opened so that nothing can write through it; ConfigError for what cannot be.

    what names the source in messages ("an Optuna storage").
    """
    if url.startswith("sqlite:///"):
        return _sqlite(url, what)
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return _postgresql(url)
    given = f"a {url.split('://', 1)[0]!r} URL" if "://" in url else "no URL"
    raise ConfigError(
        f"{what} must be a SQLite file (sqlite:///PATH) or a PostgreSQL database "
        f"(postgresql://...), which are opened read-only; got {given}"
    )
