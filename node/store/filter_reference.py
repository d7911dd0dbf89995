"""The filter language's reference, written from the parser's limits and the one key registry.

`catalog query --help` prints it and the README holds the same text (a test keeps the two
equal), so neither can drift from the keys the store knows or the limits it enforces.

Must never describe anything the parser (query_filter.py) does not do.
"""

from __future__ import annotations

from gridpoint.node.store.keys import KEYS
from gridpoint.node.store.query_filter import (
    MAX_FILTER_CHARS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_TERMS,
    MAX_IN_VALUES,
    MAX_TEXT_VALUE_CHARS,
)

__all__ = ["filter_reference"]

_TYPES = {"str": "text", "num": "number", "any": "text or number"}


def filter_reference() -> str:
    """The reference, as plain text lines (at most 100 characters wide)."""
    width = max(len(k) for k in KEYS) + 2
    keys = [f"  {spec.name:<{width}}{_TYPES[spec.type]}: {spec.about}" for spec in KEYS.values()]
    return "\n".join(
        [
            "Filters: KEY OP VALUE, joined by `and` and `or` (`and` binds tighter) and grouped by",
            "parentheses; keywords in any case. '' (the empty filter) matches every record.",
            "  =  !=  <  <=  >  >=     compare; text with text, numbers with numbers",
            "  KEY LIKE 'pattern'      % any run of characters, _ exactly one, \\ makes the next",
            "                          %, _ or \\ literal; letters match in either case",
            "  KEY IN (v1, v2, ...)    any of the values",
            "  There is no NOT: write != for one value; a negated IN or LIKE has no form yet.",
            "Values: 'text' or \"text\", numbers (3, 0.8, 1e-4), true, false. A record that has no",
            "params.NAME (or metrics.NAME) matches no comparison on it, not even !=.",
            "Keys:",
            *keys,
            f"  {'params.NAME':<{width}}text or number: a hyperparameter, e.g. params.learning_rate",
            f"  {'metrics.NAME':<{width}}number: a metric, e.g. metrics.accuracy",
            f"Limits: {MAX_FILTER_CHARS} characters, {MAX_FILTER_DEPTH} levels of parentheses, "
            f"{MAX_FILTER_TERMS} comparisons, {MAX_IN_VALUES} values in an IN,",
            f"{MAX_TEXT_VALUE_CHARS} characters in a quoted value.",
            "Example: task.type = 'text-classification' and (metrics.accuracy > 0.8 or",
            "  params.learning_rate IN (1e-4, 3e-4)) and model.base LIKE 'bert%'",
        ]
    )
