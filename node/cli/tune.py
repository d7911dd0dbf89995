"""`gridpoint tune`: run a local tuning study and publish each trial, anonymized.

Each trial lands twice: its full private record in the store (for the organization only)
and its anonymized RunRecord, signed, in the catalog. With --warm-start the study is
tuned from prior studies in the catalog (node/warm_start.py chooses them; the report of
what is used, from whom, with what weight, and what is left out and why, is printed before
the first trial). torch and friends are imported here, inside the command, never by the
daemon.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridpoint.errors import ConfigError
from gridpoint.node.cli.output import print_json, print_line, print_table, stderr
from gridpoint.node.home import NodeHome, resolve_home
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.query_filter import FilterNode, parse_filter

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers

__all__ = ["cmd_tune", "register"]


def cmd_tune(args: argparse.Namespace) -> int:
    from gridpoint.node.artifacts.keep import keep_trial_model, start_from_artifact
    from gridpoint.node.artifacts.store import ArtifactStore, NewArtifact
    from gridpoint.node.catalog import publish
    from gridpoint.node.store.base import PrivateRun
    from gridpoint.node.store.sql_store import normalize_db_url, open_store
    from gridpoint.node.tuning.anonymize import anonymize_trial
    from gridpoint.schema.vocabulary import public_hub_id
    from gridpoint.trainers.models import model_family_and_public_id
    from gridpoint.trainers.results import TrialResult
    from gridpoint.trainers.saved_model import TrainedModel, save_trained
    from gridpoint.trainers.study import run_study
    from gridpoint.trainers.study_config import load_study_config

    home = resolve_home(args.home)
    config = load_study_config(Path(args.study))
    if args.trials is not None and args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    from gridpoint.trainers.devices import check_devices

    # Checked before the store opens or the pipeline runs: a wrong device trains nothing.
    devices = args.device or args.devices
    check_devices(devices, "--device" if args.device else "--devices")
    db_url = home.db_url(args.db)
    store = open_store(db_url)
    artifacts = ArtifactStore(home, store)
    # model = { artifact = "ID" }: the kept folder, and its record as every trial's parent.
    config, parents = start_from_artifact(artifacts, config)
    published: dict[int, str] = {}
    where = parse_filter(args.from_filter) if args.from_filter else None
    if where is not None and not args.warm_start:
        raise ConfigError("--from selects prior studies; it goes with --warm-start")

    family, public_id = model_family_and_public_id(config.model)
    warm = _WarmStart(store, home, config, family, public_id, where, quiet=args.json)

    def on_trial(trial: TrialResult) -> None:
        record_id: str | None = None
        # A failure that says nothing about the hyperparameters (a bug, a missing file) would
        # only mislead peers: it stays in the private record.
        if trial.state != "failed" or trial.failure:
            record = anonymize_trial(
                trial,
                config,
                model_family=family,
                public_model_id=public_id,
                secret=home.secret,
                policy=home.config.anonymizer,
                parents=parents,
            )
            record_id = publish(store, home.identity, record).id
            published[trial.number] = record_id
        if trial.state == "failed":
            kept = f"published as {trial.failure!r}" if record_id else "kept private, not published"
            stderr.print(f"trial {trial.number} failed: {trial.error} ({kept})", markup=False)
        store.add_private_run(
            PrivateRun(
                study_name=config.name,
                trial_number=trial.number,
                detail=json.dumps(_private_detail(trial, config)),
                record_id=record_id,
                created_at=datetime.now(UTC),
            )
        )

    def keep_model(trial: TrialResult, trained: TrainedModel) -> None:
        score = trial.run.metrics.get(config.objective_metric) if trial.run else None
        if trial.state != "complete" or score is None:
            return
        keep_trial_model(
            artifacts,
            lambda folder: save_trained(trained, folder),
            NewArtifact(
                kind="trial",
                record_id=published.get(trial.number),
                base_model=public_hub_id(public_id),
                method=trained.method,
                group=config.name,
                score=score,
                metric=config.objective_metric,
            ),
            keep=config.keep,
            direction=config.objective_direction,
        )

    def on_interrupted(number: int) -> None:
        stderr.print(
            f"trial {number} was left running by an interrupted run; recorded it as failed",
            markup=False,
        )

    try:
        summary = run_study(
            config,
            normalize_db_url(home.studies_url(args.db)),
            n_trials=args.trials,
            on_trial=on_trial,
            search_for=warm.search if args.warm_start else None,
            progress=not args.json,
            devices=devices,
            worker=args.worker,
            on_interrupted=on_interrupted,
            keep_model=keep_model,
        )
    finally:
        store.close()
    if args.warm_start and warm.summary():
        from gridpoint.node.ui.study_reports import save_report

        # Kept beside the study for the UI's Study page (weights at start and at the end).
        saved_at = datetime.now(UTC).isoformat(timespec="seconds")
        save_report(home.path, config.name, {**warm.summary(), "saved_at": saved_at})
    objective = config.objective_metric
    if not summary.trials and not args.json:
        print_line(
            f"study {config.name!r} already has its {config.trials} trial(s); "
            "pass --trials N to run N more"
        )
        return 0
    rows = [
        {
            "number": t.number,
            "state": t.state,
            "params": t.params,
            "metrics": t.run.metrics if t.run and t.state == "complete" else {},
            "samples_per_second": round(t.run.samples_per_second, 1) if t.run else None,
            "device": t.run.device if t.run else None,
            "precision": t.run.precision if t.run else None,
            "record_id": published.get(t.number),
        }
        for t in summary.trials
    ]
    if args.json:
        print_json(
            {
                "study": summary.name,
                "trials": rows,
                "best": (
                    {"trial": summary.best[0], objective: summary.best[1]} if summary.best else None
                ),
                "interrupted": summary.interrupted,
                "catalog": "published, signed by this node",
                **({"warm_start": warm.summary()} if args.warm_start else {}),
            }
        )
        return 0
    print_table(
        f"study {summary.name}",
        ["trial", "state", objective, "params", "record"],
        [
            [
                t.number,
                t.state,
                _fmt(t.run.metrics.get(objective) if t.run and t.state == "complete" else None),
                json.dumps(t.params),
                published.get(t.number, "")[:12],
            ]
            for t in summary.trials
        ],
    )
    if summary.best is not None:
        number, value = summary.best
        print_line(f"best of the study so far: trial {number}, {objective} = {value:.4f}")
    if args.warm_start:
        warm.print_learned()
    if summary.interrupted:
        print_line("stopped early on request; run the same command again to continue the study")
    print_line(
        f"{len(published)} record(s) published to this node's catalog; private details kept in its store"
    )
    return 0


class _WarmStart:
    """Builds the warm-start search once the task is known, and reports on it."""

    def __init__(
        self,
        store: CatalogStore,
        home: NodeHome,
        config: Any,
        family: str,
        public_id: str,
        where: FilterNode | None,
        *,
        quiet: bool,
    ) -> None:
        self._store, self._home, self._config = store, home, config
        self._family, self._public_id, self._where = family, public_id, where
        self._quiet = quiet
        self._sampler: Any = None
        self._choice: Any = None
        self._curves = 0

    def search(self, task: Any, default: Any) -> Any:
        from gridpoint.node.tuning.anonymize import pseudonym
        from gridpoint.node.tuning.warm_start import choose_priors
        from gridpoint.trainers.study import Search
        from gridpoint.trainers.transfer.pruner import CurvePruner
        from gridpoint.trainers.transfer.sampler import WarmStartSampler

        config = self._config
        self._choice = choose_priors(
            self._store,
            task=task,
            objective_metric=config.objective_metric,
            model_family=self._family,
            model_base=self._public_id,
            where=self._where,
            exclude=(
                self._home.identity.node_id,
                pseudonym(self._home.secret, "study", config.name),
            ),
            renames=config.warm_start.rename,
            names={
                **{p.node_id: p.name for p in self._store.list_peers()},
                self._home.identity.node_id: "this node",
            },
        )
        self._sampler = WarmStartSampler(
            self._choice.priors,
            config.search_space,
            method=config.warm_start.method,
            seed=default.seed,
        )
        pruner = default.pruner
        if config.warm_start.curve_pruning:
            curves = [c for m in self._sampler.used for c in m.curves if c]
            self._curves = len(curves)
            if curves:
                pruner = CurvePruner(
                    curves, n_warmup_steps=config.pruner.n_warmup_steps, fallback=pruner
                )
        if not self._quiet:
            self._print_report()
        if not self._sampler.used:
            return Search(default.sampler, pruner)
        return Search(self._sampler, pruner)

    def _rows(self) -> list[dict[str, Any]]:
        sources = self._choice.sources
        rows = []
        for row in self._sampler.report():
            source = sources[row["prior"]]
            rows.append(
                {
                    **row,
                    "study": source.study,
                    "signer": source.signer,
                    "signer_name": source.signer_name,
                }
            )
        for source, reason in self._choice.left_out:
            rows.append(
                {
                    "prior": source.label,
                    "study": source.study,
                    "signer": source.signer,
                    "signer_name": source.signer_name,
                    "used": False,
                    "trials": source.trials,
                    "reason": reason,
                }
            )
        return rows

    def _print_report(self) -> None:
        rows = self._rows()
        if not rows:
            print_line("warm start: no prior study of this task type in the catalog; tuning cold")
            return
        print_table(
            f"warm start ({self._config.warm_start.method}): prior studies",
            ["prior study", "signed by", "trials", "similarity", "weight", "used / why not"],
            [
                [
                    r["study"][:12],
                    f"{r['signer'][:12]} ({r['signer_name']})"
                    if r["signer_name"]
                    else r["signer"][:12],
                    r["trials"],
                    r.get("similarity", ""),
                    r.get("weight", ""),
                    "; ".join(["used", *r["notes"]]) if r["used"] else f"left out: {r['reason']}",
                ]
                for r in rows
            ],
        )
        if not self._sampler.used:
            print_line("warm start: no prior study fits this search space; tuning cold")
        else:
            print_line(
                f"first trials: the priors' best configurations; this study's own observations "
                f"start at weight {self._sampler.target_weight:.3f}"
                + (
                    f"; curve-aware pruning with {self._curves} prior curve(s)"
                    if self._curves
                    else ""
                )
            )

    def print_learned(self) -> None:
        if self._sampler is None or not self._sampler.used or self._sampler.method != "rgpe":
            return
        weights = ", ".join(f"{k}: {v:.2f}" for k, v in self._sampler.weights.items())
        print_line(f"learned weights: {weights}; this study: {self._sampler.target_weight:.2f}")

    def summary(self) -> dict[str, Any]:
        if self._sampler is None:
            return {}
        return {
            "method": self._sampler.method,
            "priors": self._rows(),
            "weights": self._sampler.weights,
            "study_weight": self._sampler.target_weight,
            "prior_curves": self._curves,
        }


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}"


def _private_detail(trial: Any, config: Any) -> dict[str, Any]:
    run = trial.run
    return {
        "study": config.name,
        "study_file": str(config.path),
        "pipeline": config.pipeline,
        "trial": trial.number,
        "state": trial.state,
        "params": trial.params,
        "error": trial.error,
        "curve": [[s.step, s.metric, s.value] for s in trial.curve],
        "metrics": run.metrics if run else {},
        "device": run.device if run else None,
        "precision": run.precision if run else None,
        "samples_per_second": run.samples_per_second if run else None,
        "trainable_parameters": run.trainable_parameters if run else None,
        "task": trial.task.__dict__,
    }


def register(sub: SubParsers) -> None:
    """Adds `tune`."""
    p = sub.add_parser(
        "tune",
        help="run a local tuning study; publish each trial anonymized",
        description="Run (or resume) a tuning study from a study file.",
    )
    p.add_argument("study", help="study file (TOML), e.g. examples/tiny-study.toml")
    p.add_argument(
        "--trials", type=int, help="run this many trials now (default: up to the file's `trials`)"
    )
    p.add_argument(
        "--devices",
        default="auto",
        help="where trials run, one per device at a time: auto (every GPU, else the CPU), cpu, "
        "or a list like cuda:0,cuda:1",
    )
    p.add_argument(
        "--device", help="one device (cpu, cuda, cuda:1): the older spelling of --devices"
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="join a study another process started (through this node's PostgreSQL, --db); "
        "runs trials until the study has its `trials`",
    )
    p.add_argument(
        "--warm-start",
        action="store_true",
        help="tune from prior studies in this node's catalog (own and synced from peers)",
    )
    p.add_argument(
        "--from",
        dest="from_filter",
        metavar="FILTER",
        help="with --warm-start: only priors matching this catalog filter, e.g. \"task.language = 'en'\"",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_tune)
