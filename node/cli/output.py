"""How commands print: one JSON document with --json, otherwise rich tables and lines.

Data goes to stdout; diagnostics go to stderr, so `--json | jq` always gets clean JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_json", "print_line", "print_table", "stderr"]

stderr = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
_stdout = Console(highlight=False, soft_wrap=True, emoji=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    _stdout.print(table)


def print_line(text: str) -> None:
    _stdout.print(text, markup=False)
