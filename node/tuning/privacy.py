"""A private study on this node: its privacy mode, its pipeline's budget, its guarantee.

`private_mode` gives the study its privacy mode (its own [privacy] table, else the node's
default in config.toml). `charged` charges the study's whole budget to its pipeline's ledger
entry before any trial runs (refused, with the numbers, when it would pass the node's
`privacy.budget_epsilon`), and settles the entry to what the accountant says the run spent
when it ends. A pipeline is keyed by its pseudonym: the callable the study file names, in
the study file's folder, never in clear. `ledger_report` is `gridpoint privacy ledger`.

The ledger is never published; nothing here prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.node.store.sql_privacy import PrivacyRelease
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.schema import PrivacyGuarantee

if TYPE_CHECKING:
    from gridpoint.trainers.study_config import StudyConfig

__all__ = [
    "LedgerReport",
    "PipelineTotal",
    "charged",
    "guarantee_of",
    "ledger_report",
    "pipeline_key",
    "private_mode",
]


def private_mode(home: NodeHome, config: StudyConfig) -> StudyConfig:
    """config with the node's default privacy mode when its file has no [privacy] table."""
    from gridpoint.trainers.privacy.spec import privacy_from_table
    from gridpoint.trainers.study_config import check_privacy

    default = home.config.privacy
    if config.privacy_set or not default.enabled:
        return config
    spec = privacy_from_table(default.study_table())
    if spec is None:  # pragma: no cover - the table always enables
        return config
    check_privacy(config, spec)
    return dataclasses.replace(config, privacy=spec)


def pipeline_key(home: NodeHome, config: StudyConfig) -> str:
    """The ledger's key for the study's pipeline: a keyed pseudonym, never its name."""
    return pseudonym(home.secret, "pipeline", str(config.path.parent), config.pipeline)


def guarantee_of(config: StudyConfig) -> PrivacyGuarantee | None:
    """What each of the study's records states (None: the study is not private)."""
    spec = config.privacy
    if spec is None:
        return None
    return PrivacyGuarantee(spec.epsilon, spec.delta, spec.protect, spec.accountant)


@contextmanager
def charged(home: NodeHome, store: SqlStore, config: StudyConfig) -> Iterator[list[float | None]]:
    """Charges a private study to its pipeline for the block; settles it after.

    The block sets the one item of the list it is given to the epsilon the run spent (None
    leaves the full charge). Nothing is charged for a study that is not private.
    """
    spent: list[float | None] = [None]
    spec = config.privacy
    if spec is None:
        yield spent
        return
    entry = store.charge_privacy(
        PrivacyRelease(
            pipeline=pipeline_key(home, config),
            study=pseudonym(home.secret, "study", config.name),
            epsilon=spec.epsilon,
            delta=spec.delta,
            protected=spec.protect,
            accountant=spec.accountant,
        ),
        home.config.privacy.budget_epsilon,
    )
    try:
        yield spent
    finally:
        if spent[0] is not None:
            store.settle_privacy(entry, spent[0])


@dataclass(frozen=True)
class PipelineTotal:
    """One pipeline's releases added up (basic composition)."""

    pipeline: str
    releases: int
    epsilon: float
    delta: float
    #: The node's budget per pipeline (0: none).
    budget_epsilon: float


@dataclass(frozen=True)
class LedgerReport:
    """The whole ledger: every release, and each pipeline's running total."""

    releases: tuple[PrivacyRelease, ...]
    totals: tuple[PipelineTotal, ...]


def ledger_report(home: NodeHome, db: str | None = None) -> LedgerReport:
    """What `gridpoint privacy ledger` shows."""
    store = open_store(home.db_url(db))
    try:
        releases = store.privacy_releases()
    finally:
        store.close()
    totals: dict[str, PipelineTotal] = {}
    budget = home.config.privacy.budget_epsilon
    for r in releases:
        was = totals.get(r.pipeline, PipelineTotal(r.pipeline, 0, 0.0, 0.0, budget))
        totals[r.pipeline] = dataclasses.replace(
            was,
            releases=was.releases + 1,
            epsilon=was.epsilon + r.epsilon,
            delta=was.delta + r.delta,
        )
    return LedgerReport(tuple(releases), tuple(totals.values()))
