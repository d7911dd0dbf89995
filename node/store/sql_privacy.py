"""The privacy budget ledger over the SqlStore's engine (mixed into SqlStore).

A release is charged in full, in one write transaction that first checks the pipeline's
budget, before anything of it exists: a run killed mid-study leaves its full charge (the
ledger may over-count, never under-count). When the release ends it is settled to what its
accountant says it spent, which is never more than it was charged. Totals compose releases
by adding their epsilons and deltas (basic composition: an upper bound whatever each
accountant was).
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, case, func, select, update

from gridpoint.errors import PrivacyBudgetExceeded, StoreError
from gridpoint.node.store.privacy_models import PRIVACY_LEDGER as L
from gridpoint.node.store.sql_rows import as_utc

__all__ = ["PrivacyRelease", "SqlPrivacy"]


@dataclass(frozen=True)
class PrivacyRelease:
    """One entry of the ledger."""

    pipeline: str
    study: str
    epsilon: float
    delta: float
    protected: str
    accountant: str
    kind: str = "study"
    state: str = "charged"
    at: datetime | None = None
    id: int | None = None


class SqlPrivacy:
    """The ledger's reads and writes (SqlStore supplies the transactions)."""

    @abstractmethod
    def writing(self) -> AbstractContextManager[Connection]:
        """A write transaction (SqlStore's)."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Connection]:
        """A read transaction (SqlStore's)."""

    def charge_privacy(self, release: PrivacyRelease, budget_epsilon: float) -> int:
        """Records release in full; PrivacyBudgetExceeded (nothing written) when it would
        take the pipeline past budget_epsilon (0: no limit). Returns the entry's id."""
        with self.writing() as conn:
            spent = float(
                conn.scalar(
                    select(func.coalesce(func.sum(L.c.epsilon), 0.0)).where(
                        L.c.pipeline == release.pipeline
                    )
                )
                or 0.0
            )
            if budget_epsilon > 0 and spent + release.epsilon > budget_epsilon + 1e-9:
                raise PrivacyBudgetExceeded(
                    f"privacy budget: this pipeline has spent epsilon {spent:.3g} of "
                    f"{budget_epsilon:.3g}; a study of epsilon {release.epsilon:.3g} would "
                    f"take it to {spent + release.epsilon:.3g} (refused before it started)"
                )
            inserted = conn.execute(
                L.insert().values(
                    at=release.at or datetime.now(UTC),
                    pipeline=release.pipeline,
                    study=release.study,
                    kind=release.kind,
                    epsilon=release.epsilon,
                    delta=release.delta,
                    protected=release.protected,
                    accountant=release.accountant,
                    state="charged",
                )
            ).inserted_primary_key
            if inserted is None:  # pragma: no cover - every supported database returns it
                raise StoreError("the privacy ledger did not number its new entry")
            return int(inserted[0])

    def settle_privacy(self, entry_id: int, epsilon: float) -> None:
        """The entry lowered to what its release spent (never raised above its charge)."""
        with self.writing() as conn:
            conn.execute(
                update(L)
                .where(L.c.id == entry_id)
                .values(
                    epsilon=case((L.c.epsilon < epsilon, L.c.epsilon), else_=epsilon),
                    state="settled",
                )
            )

    def privacy_releases(self, pipeline: str | None = None) -> list[PrivacyRelease]:
        """Every entry (of one pipeline), oldest first."""
        query = select(L).order_by(L.c.id)
        if pipeline is not None:
            query = query.where(L.c.pipeline == pipeline)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            PrivacyRelease(
                pipeline=r.pipeline,
                study=r.study,
                epsilon=r.epsilon,
                delta=r.delta,
                protected=r.protected,
                accountant=r.accountant,
                kind=r.kind,
                state=r.state,
                at=as_utc(r.at),
                id=r.id,
            )
            for r in rows
        ]
