"""`gridpoint tune`: run a local tuning study and publish each trial, anonymized.

Each trial lands twice: its full private record in the store (for the organization only)
and its anonymized RunRecord, signed, in the catalog. torch and friends are imported here,
inside the command, never by the daemon.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.errors import ConfigError
from node.home import resolve_home
from node.output import print_json, print_line, print_table

__all__ = ["cmd_tune", "register"]


def _optuna_storage(db_url: str, home_path: Path) -> str:
    # Optuna keeps its own tables; beside a PostgreSQL store they share the database,
    # beside the default SQLite store they get their own file (no write contention).
    return (
        db_url
        if db_url.startswith(("postgresql", "postgres"))
        else f"sqlite:///{home_path / 'studies.db'}"
    )


def cmd_tune(args: argparse.Namespace) -> int:
    from trainers.errors import TrainerError

    try:
        return _tune(args)
    except TrainerError as exc:
        raise ConfigError(str(exc)) from None


def _tune(args: argparse.Namespace) -> int:
    from node.anonymize import anonymize_trial
    from node.catalog import publish
    from node.sql_store import normalize_db_url, open_store
    from node.store import PrivateRun
    from trainers.models import model_family_and_public_id
    from trainers.results import TrialResult
    from trainers.study import run_study
    from trainers.study_config import load_study_config

    home = resolve_home(args.home)
    config = load_study_config(Path(args.study))
    if args.trials is not None and args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    db_url = home.db_url(args.db)
    store = open_store(db_url)
    published: dict[int, str] = {}

    family, public_id = model_family_and_public_id(config.model)

    def on_trial(trial: TrialResult) -> None:
        record = anonymize_trial(
            trial,
            config,
            model_family=family,
            public_model_id=public_id,
            secret=home.secret,
            policy=home.config.anonymizer,
        )
        result = publish(store, home.identity, record)
        published[trial.number] = result.id
        store.add_private_run(
            PrivateRun(
                study_name=config.name,
                trial_number=trial.number,
                detail=json.dumps(_private_detail(trial, config)),
                record_id=result.id,
                created_at=datetime.now(UTC),
            )
        )

    try:
        summary = run_study(
            config,
            normalize_db_url(_optuna_storage(db_url, home.path)),
            n_trials=args.trials,
            on_trial=on_trial,
            progress=not args.json,
            device=args.device,
        )
    finally:
        store.close()
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
                "best": summary.best.number if summary.best else None,
                "interrupted": summary.interrupted,
                "catalog": "published, signed by this node",
            }
        )
        return 0
    print_table(
        f"study {summary.name}",
        ["trial", "state", objective, "params", "record"],
        [
            [
                r["number"],
                r["state"],
                _fmt(r["metrics"].get(objective)),
                json.dumps(r["params"]),
                (r["record_id"] or "")[:12],
            ]
            for r in rows
        ],
    )
    if summary.best is not None and summary.best.run is not None:
        print_line(
            f"best: trial {summary.best.number}, {objective} = {summary.best.run.metrics[objective]:.4f}"
        )
    if summary.interrupted:
        print_line("stopped early on request; run the same command again to continue the study")
    print_line(
        f"{len(published)} record(s) published to this node's catalog; private details kept in its store"
    )
    return 0


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
        "task": trial.task.__dict__,
    }


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="run a local tuning study; publish each trial anonymized",
        description="Run (or resume) a tuning study from a study file.",
    )
    p.add_argument("study", help="study file (TOML), e.g. examples/tiny-study.toml")
    p.add_argument(
        "--trials", type=int, help="run this many trials now (default: up to the file's `trials`)"
    )
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_tune)
