"""`gridpoint privacy ledger`: every private release of this node, per pipeline, with totals.

Parses, calls the one service function (node/tuning/privacy.py's ledger_report) and prints.
Pipelines and studies appear as this node's pseudonyms: the ledger itself is never published.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING

from gridpoint.node.cli.output import print_json, print_line, print_table
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers

__all__ = ["cmd_ledger", "register"]


def cmd_ledger(args: argparse.Namespace) -> int:
    from gridpoint.node.tuning.privacy import ledger_report

    report = ledger_report(resolve_home(args.home), args.db)
    if args.json:
        print_json(
            {
                "releases": [
                    {**asdict(r), "at": r.at.isoformat() if r.at else None} for r in report.releases
                ],
                "totals": [asdict(t) for t in report.totals],
            }
        )
        return 0
    print_table(
        "privacy ledger",
        ["id", "when", "pipeline", "study", "epsilon", "delta", "protected", "state"],
        [
            [
                r.id,
                r.at.strftime("%Y-%m-%d %H:%M") if r.at else "",
                r.pipeline[:12],
                r.study[:12],
                f"{r.epsilon:.3g}",
                f"{r.delta:.2g}",
                r.protected,
                r.state,
            ]
            for r in report.releases
        ],
    )
    for t in report.totals:
        budget = f" of {t.budget_epsilon:g}" if t.budget_epsilon > 0 else " (no budget set)"
        print_line(
            f"pipeline {t.pipeline[:12]}: {t.releases} release(s), epsilon {t.epsilon:.3g}"
            f"{budget}, delta {t.delta:.2g}"
        )
    return 0


def register(sub: SubParsers) -> None:
    """Adds `privacy ledger`."""
    group = sub.add_parser(
        "privacy", help="differential privacy: the budget ledger of private pipelines"
    )
    commands = group.add_subparsers(dest="privacy_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "ledger",
        help="every private release and each pipeline's running total",
        description="Every private release of this node's pipelines, and each one's total.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_ledger)
