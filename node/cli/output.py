"""How commands print: one JSON document with --json, otherwise rich tables and lines.

Data goes to stdout; diagnostics go to stderr, so `--json | jq` always gets clean JSON.
A table fits the terminal (or $COLUMNS); written to a pipe or a file it keeps its natural
width, one line per row, for grep and awk.
Every time is printed one way, in UTC to the second: 2026-12-04T22:02:05Z (timestamp()).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

__all__ = ["print_delimited", "print_json", "print_line", "print_table", "stderr", "timestamp"]

stderr = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
_stdout = Console(highlight=False, soft_wrap=True, emoji=False)
#: Wider than any table's natural width: the bound a table is measured against off a terminal.
_UNBOUNDED = 100_000


def timestamp(moment: datetime | None) -> str | None:
    """The one form of a time in every output: ISO 8601 in UTC, to the second, with Z.
    A naive time (SQLite's) is UTC already."""
    if moment is None:
        return None
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    """A table; the columns at the `numeric` positions are right-aligned, and they and those
    at the `whole` positions (ids, short words) are never split across lines: on a narrow
    terminal the text columns give way."""
    table = Table(title=title, show_lines=False)
    for i, col in enumerate(columns):
        # At least as wide as its widest value: a heading may fold, a value never.
        widest = max((len(_cell(row[i])) for row in rows if i < len(row)), default=0)
        table.add_column(
            col,
            overflow="fold",
            justify="right" if i in numeric else "left",
            min_width=widest if i in whole or i in numeric else None,
        )
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    _table_console(table).print(table)


def _table_console(table: Table) -> Console:
    """A console as wide as the terminal (or $COLUMNS); off a terminal, where rich assumes 80
    columns and folds each row over several lines, as wide as the table's natural width."""
    width = None
    if not (_stdout.is_terminal or os.environ.get("COLUMNS", "").isdigit()):
        options = _stdout.options.update_width(_UNBOUNDED)
        width = max(80, Measurement.get(_stdout, options, table).maximum)
    return Console(highlight=False, soft_wrap=True, emoji=False, width=width)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def print_delimited(columns: Sequence[str], rows: Sequence[Sequence[Any]], delimiter: str) -> None:
    """CSV (delimiter ",") or TSV ("\\t") with a header row; None is an empty field."""
    writer = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    sys.stdout.flush()


def print_line(text: str) -> None:
    _stdout.print(text, markup=False)
