"""The warm start of one run of a study: its search, built once the task is known, and its report.

`tune --warm-start` (study_run.py) hands a `WarmStartSearch` to the trainers as the study's
search factory. When the study's data has been described, it chooses prior studies from the
catalog (warm_start.py), builds the transfer sampler and, with `[warm_start] curve_pruning`,
the curve-aware pruner (trainers/transfer/), and hands the report of what it found (every
prior used or left out, who signed it, its weight, a private prior's epsilon and noise) to
`on_report` before the first trial.
`report()` gives the same report at the end, with the weights the sampler learned.

Must never read private runs, or take this study's own records as priors of itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.node.store.base import CatalogStore, ModelRef
from gridpoint.node.store.query_filter import FilterNode
from gridpoint.node.study_reports import DimensionRow, PriorRow, WarmStartReport
from gridpoint.node.tuning.warm_start import MAX_PRIOR_TRIALS, PriorChoice, choose_priors
from gridpoint.schema import TaskDescriptor

if TYPE_CHECKING:
    from gridpoint.trainers.study import Search
    from gridpoint.trainers.study_config import StudyConfig
    from gridpoint.trainers.transfer.sampler import WarmStartSampler

__all__ = ["WarmStartSearch"]


class WarmStartSearch:
    """The study's search factory: priors from the catalog once the task is known."""

    def __init__(
        self,
        store: CatalogStore,
        home: NodeHome,
        config: StudyConfig,
        model: ModelRef,
        where: FilterNode | None,
        on_report: Callable[[WarmStartReport], None],
    ) -> None:
        self._store, self._home, self._config = store, home, config
        self._model, self._where, self._on_report = model, where, on_report
        self._sampler: WarmStartSampler | None = None
        self._choice: PriorChoice | None = None
        self._curves = 0

    def __call__(self, task: TaskDescriptor, default: Search) -> Search:
        """The sampler and pruner this run of the study tunes with (the default ones when no
        prior fits); reports what it found."""
        from gridpoint.trainers.study import Search
        from gridpoint.trainers.transfer.pruner import CurvePruner
        from gridpoint.trainers.transfer.sampler import WarmStartSampler

        config, home = self._config, self._home
        choice = choose_priors(
            self._store,
            task=task,
            objective_metric=config.objective_metric,
            model_family=self._model.family,
            model_base=self._model.public_id,
            method=self._model.method,
            where=self._where,
            exclude=(home.identity.node_id, pseudonym(home.secret, "study", config.name)),
            renames=config.warm_start.rename,
            names={
                **{p.node_id: p.name for p in self._store.list_peers()},
                home.identity.node_id: "this node",
            },
        )
        sampler = WarmStartSampler(
            choice.priors,
            config.search_space,
            method=config.warm_start.method,
            seed=default.seed,
            max_prior_trials=MAX_PRIOR_TRIALS,
        )
        pruner: Any = default.pruner
        curves = [c for m in sampler.used for c in m.curves if c]
        if config.warm_start.curve_pruning and curves:
            pruner = CurvePruner(
                curves, n_warmup_steps=config.pruner.n_warmup_steps, fallback=pruner
            )
        self._sampler, self._choice = sampler, choice
        self._curves = len(curves) if config.warm_start.curve_pruning else 0
        report = self.report()
        if report is not None:
            self._on_report(report)
        return Search(sampler if sampler.used else default.sampler, pruner, default.seed)

    def report(self) -> WarmStartReport | None:
        """What the search is built from, with the weights as they are now (at the start, or
        learned by the end); None before the task was known."""
        if self._sampler is None or self._choice is None:
            return None
        return WarmStartReport(
            method=self._sampler.method,
            priors=_rows(self._sampler, self._choice),
            weights=dict(self._sampler.weights),
            study_weight=self._sampler.target_weight,
            prior_curves=self._curves,
        )


def _rows(sampler: WarmStartSampler, choice: PriorChoice) -> tuple[PriorRow, ...]:
    """Every prior: used or left out by the sampler, and those the catalog choice left out."""
    rows = []
    for row in sampler.report():
        source = choice.sources[row["prior"]]
        rows.append(
            PriorRow(
                prior=row["prior"],
                study=source.study,
                signer=source.signer,
                signer_name=source.signer_name,
                trials=int(row["trials"]),
                used=bool(row["used"]),
                similarity=row.get("similarity"),
                weight=row.get("weight"),
                notes=tuple(row.get("notes", ())),
                reason=str(row.get("reason", "")),
                dimensions=tuple(
                    DimensionRow(d["dimension"], d["prior"], d["how"], d["note"])
                    for d in row.get("dimensions", ())
                ),
                trials_left_out=int(row.get("trials_left_out", 0)),
                values_clipped=int(row.get("values_clipped", 0)),
                epsilon=row.get("epsilon"),
                delta=row.get("delta"),
                noise=row.get("noise"),
                reliability=row.get("reliability"),
            )
        )
    rows += [
        PriorRow(
            prior=source.label,
            study=source.study,
            signer=source.signer,
            signer_name=source.signer_name,
            trials=source.trials,
            used=False,
            reason=reason,
        )
        for source, reason in choice.left_out
    ]
    return tuple(rows)
