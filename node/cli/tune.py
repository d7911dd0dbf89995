"""`gridpoint tune`: run a local tuning study and publish each trial, anonymized.

Parses, calls the tune service once (node/tuning/study_run.py: each trial lands twice, its
full private record in the store and its anonymized RunRecord, signed, in the catalog) and
prints what it did. With --warm-start the report of what the study is tuned from (who signed
each prior study, with what weight, what is left out and why) is printed before the first
trial. Exit status: 0, or 130 when stopped early by one Ctrl-C (run it again to continue).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from gridpoint.node.cli.output import print_json, print_line, print_table, stderr
from gridpoint.node.home import resolve_home
from gridpoint.node.study_reports import WarmStartReport

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.node.tuning.study_run import TuneOutcome

__all__ = ["EXIT_INTERRUPTED", "cmd_tune", "register"]

#: Exit status of a run stopped early by Ctrl-C: 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 130


class _Printed:
    """What the user sees while the study runs (the service's TuneEvents)."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet

    def warm_start(self, report: WarmStartReport) -> None:
        if not self._quiet:
            _print_priors(report)

    def notice(self, line: str) -> None:
        stderr.print(line, markup=False)


def cmd_tune(args: argparse.Namespace) -> int:
    # Imported here: the service loads the SQL store, which every other command's parser
    # (and `gridpoint --help`) would otherwise wait for.
    from gridpoint.node.tuning.study_run import TuneRequest, run_tune

    request = TuneRequest(
        home=resolve_home(args.home),
        study_file=Path(args.study),
        db=args.db,
        trials=args.trials,
        devices=args.device or args.devices,
        devices_flag="--device" if args.device else "--devices",
        worker=args.worker,
        warm_start=args.warm_start,
        prior_filter=args.from_filter or "",
        progress=not args.json,
    )
    outcome = run_tune(request, _Printed(quiet=args.json))
    if args.json:
        _print_json(outcome)
    elif not outcome.trials:
        print_line(
            f"study {outcome.study!r} already has its {outcome.planned} trial(s); "
            "pass --trials N to run N more"
        )
    else:
        _print_summary(outcome)
    return EXIT_INTERRUPTED if outcome.interrupted else 0


def _print_json(outcome: TuneOutcome) -> None:
    best = outcome.best
    warm = outcome.warm_start
    print_json(
        {
            "study": outcome.study,
            "trials": [asdict(t) for t in outcome.trials],
            "best": {"trial": best[0], outcome.objective_metric: best[1]} if best else None,
            "interrupted": outcome.interrupted,
            "catalog": "published, signed by this node",
            **({"warm_start": asdict(warm)} if warm is not None else {}),
            **(
                {"privacy": {**asdict(outcome.privacy), "spent_epsilon": outcome.privacy_spent}}
                if outcome.privacy is not None
                else {}
            ),
        }
    )


def _print_summary(outcome: TuneOutcome) -> None:
    objective = outcome.objective_metric
    print_table(
        f"study {outcome.study}",
        ["trial", "state", objective, "params", "record"],
        [
            [
                t.number,
                t.state,
                _fmt(t.metrics.get(objective)),
                json.dumps(t.params),
                (t.record_id or "")[:12],
            ]
            for t in outcome.trials
        ],
    )
    if outcome.best is not None:
        number, value = outcome.best
        print_line(f"best of the study so far: trial {number}, {objective} = {value:.4f}")
    warm = outcome.warm_start
    if warm is not None and warm.used and warm.method == "rgpe":
        weights = ", ".join(f"{k}: {v:.2f}" for k, v in warm.weights.items())
        print_line(f"learned weights: {weights}; this study: {warm.study_weight:.2f}")
    if outcome.privacy is not None:
        p = outcome.privacy
        spent = f"{outcome.privacy_spent:.3g}" if outcome.privacy_spent is not None else "?"
        print_line(
            f"private study: epsilon {p.epsilon:g}, delta {p.delta:g} ({p.protected} rows "
            f"protected, {p.accountant} accountant); this run spent epsilon {spent}; "
            "the values above are the released ones"
        )
    if outcome.interrupted:
        print_line("stopped early on request; run the same command again to continue the study")
    print_line(
        f"{outcome.published} record(s) published to this node's catalog; "
        "private details kept in its store"
    )


def _print_priors(report: WarmStartReport) -> None:
    if not report.priors:
        print_line("warm start: no prior study of this task type in the catalog; tuning cold")
        return
    print_table(
        f"warm start ({report.method}): prior studies",
        ["prior study", "signed by", "trials", "similarity", "weight", "privacy", "used / why not"],
        [
            [
                # A row for several studies of one signer names how many.
                p.study[:12] or p.prior.split("@")[0],
                f"{p.signer[:12]} ({p.signer_name})" if p.signer_name else p.signer[:12],
                p.trials,
                "" if p.similarity is None else p.similarity,
                "" if p.weight is None else p.weight,
                p.privacy,
                "; ".join(["used", *p.notes]) if p.used else f"left out: {p.reason}",
            ]
            for p in report.priors
        ],
    )
    if not report.used:
        print_line("warm start: no prior study fits this search space; tuning cold")
    else:
        print_line(
            f"first trials: the priors' best configurations; this study's own observations "
            f"start at weight {report.study_weight:.3f}"
            + (
                f"; curve-aware pruning with {report.prior_curves} prior curve(s)"
                if report.prior_curves
                else ""
            )
        )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


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
