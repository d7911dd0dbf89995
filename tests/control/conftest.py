"""A world of in-process nodes whose stores are all on SQLite, or all on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.control.world import World


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes a fresh store URL per node name, on the parametrized backend: a SQLite file, or
    a schema of its own in one fresh PostgreSQL database (far cheaper than a database each)."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / f'{name}.db'}"
    url = str(request.getfixturevalue("pg_url"))  # skips (or fails in CI) with no server

    def postgresql(name: str) -> str:
        schema = f"node_{name.lower()}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{url}?options=-csearch_path%3D{schema}"

    return postgresql


@pytest.fixture
def world(tmp_path: Path, new_url: Callable[[str], str]) -> Iterator[World]:
    w = World(tmp_path / "world", new_url)
    yield w
    w.close()
