"""How commands print: one JSON document with --json, otherwise rich tables and lines.

Data goes to stdout; diagnostics go to stderr, so `--json | jq` always gets clean JSON.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_delimited", "print_json", "print_line", "print_table", "stderr"]

stderr = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
_stdout = Console(highlight=False, soft_wrap=True, emoji=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    whole: Sequence[int] = (),
) -> None:
    """A table; the columns at the `numeric` positions are right-aligned, those at the
    `whole` positions (ids, short words) never wrap: the others give way when it is narrow."""
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(columns):
        table.add_column(
            col,
            overflow="fold",
            justify="right" if i in numeric else "left",
            no_wrap=i in whole,
        )
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    _stdout.print(table)


def print_delimited(columns: Sequence[str], rows: Sequence[Sequence[Any]], delimiter: str) -> None:
    """CSV (delimiter ",") or TSV ("\\t") with a header row; None is an empty field."""
    writer = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    sys.stdout.flush()


def print_line(text: str) -> None:
    _stdout.print(text, markup=False)
