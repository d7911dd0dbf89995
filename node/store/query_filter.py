"""The catalog filter language: parsed by a real grammar into a small typed tree.

    task.type = 'text-classification' and metrics.accuracy > 0.8
        and params.learning_rate < 1e-4 and model.base LIKE 'bert%'

Keys (gridpoint.node.store.keys): kind, signer, study, status, period, task.<field>,
model.<field>, params.<name>, metrics.<name>. Operators: = != < <= > >= LIKE IN; `and` binds tighter than `or`;
parentheses group. Values: 'single' or "double" quoted strings, numbers, true, false.

LIKE means the same on every database: `%` matches any run of characters, `_` exactly one,
a backslash makes the next `%`, `_` or backslash literal, and letters match in either case
(every text a record holds is ASCII, so "either case" is exact).

The tree is turned into parameterized SQL by the store (gridpoint.node.store.sql_store); nothing a filter
says ever reaches SQL as text. Errors point at the column where the filter goes wrong.

Must never let one filter cost without bound: its size, nesting, number of comparisons, IN
lists and text values are capped (the limits below) before any SQL is built, and checked
before the parser recurses.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from gridpoint.errors import FilterError
from gridpoint.node.store.keys import key_spec
from gridpoint.schema.validation import shown

__all__ = [
    "MAX_FILTER_CHARS",
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_TERMS",
    "MAX_IN_VALUES",
    "MAX_TEXT_VALUE_CHARS",
    "And",
    "Comparison",
    "FilterNode",
    "Or",
    "OrderBy",
    "Value",
    "filter_names",
    "filter_text",
    "parse_filter",
    "parse_order_by",
]

Value = str | float | bool

#: Longest filter (and --order-by) text, in characters.
MAX_FILTER_CHARS = 4096
#: Deepest nesting of parentheses (an IN list's own count as one level).
MAX_FILTER_DEPTH = 8
#: Most comparisons in one filter (each IN counts as one).
MAX_FILTER_TERMS = 50
#: Most values in one IN list.
MAX_IN_VALUES = 100
#: Longest quoted value or LIKE pattern, in characters.
MAX_TEXT_VALUE_CHARS = 256

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# In a LIKE pattern a backslash escapes %, _ or itself, and nothing else.
_LIKE_ESCAPES = re.compile(r"\\[%_\\]?")


_GRAMMAR = r"""
?start: expr
?expr: and_expr (_OR and_expr)*  -> or_
?and_expr: atom (_AND atom)*     -> and_
?atom: comparison
     | "(" expr ")"
comparison: KEY OP value                     -> compare
          | KEY _LIKE STRING                 -> like
          | KEY _IN "(" value ("," value)* ")" -> in_
?value: STRING -> string
      | NUMBER -> number
      | _TRUE  -> true
      | _FALSE -> false
_OR.2: /or\b/i
_AND.2: /and\b/i
_LIKE.2: /like\b/i
_IN.2: /in\b/i
_TRUE.2: /true\b/i
_FALSE.2: /false\b/i
KEY: /[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*/
OP: "!=" | "<=" | ">=" | "=" | "<" | ">"
STRING: /'[^']*'/ | /"[^"]*"/
NUMBER: /[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/
%import common.WS
%ignore WS
"""

_PARSER = Lark(_GRAMMAR, parser="lalr", propagate_positions=True)
# The grammar's own KEY pattern: --order-by takes exactly the keys a filter does.
_KEY = re.compile(next(t.pattern.to_regexp() for t in _PARSER.terminals if t.name == "KEY"))


@dataclass(frozen=True)
class Comparison:
    """key op value; op is one of = != < <= > >= LIKE IN (IN takes a tuple)."""

    key: str
    op: str
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class And:
    operands: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[FilterNode, ...]


FilterNode = Comparison | And | Or


def _check_key(token: Token) -> str:
    return key_spec(str(token), token.column).name


def _check_value(key: Token, value: Value) -> None:
    kt = key_spec(str(key)).type
    is_num = isinstance(value, float) and not isinstance(value, bool)
    if kt == "num" and not is_num:
        raise FilterError(f"{key} compares with a number", key.column)
    if kt == "str" and not isinstance(value, str):
        raise FilterError(f"{key} compares with a quoted string", key.column)


def _check_like(pattern: str, column: int | None) -> None:
    for escape in _LIKE_ESCAPES.finditer(pattern):
        if len(escape.group()) != 2:
            raise FilterError(
                "in a LIKE pattern a backslash must be followed by %, _ or another backslash",
                column,
            )


@v_args(inline=True)
class _ToTree(Transformer[Token, FilterNode]):
    def string(self, token: Token) -> str:
        text = str(token)[1:-1]
        if len(text) > MAX_TEXT_VALUE_CHARS:
            raise FilterError(
                f"a quoted value is longer than {MAX_TEXT_VALUE_CHARS} characters", token.column
            )
        if _CONTROL.search(text):
            raise FilterError("a quoted value contains a control character", token.column)
        return text

    def number(self, token: Token) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise FilterError(f"number {shown(str(token))} is out of range", token.column)
        return value

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False

    def compare(self, key: Token, op: Token, value: Value) -> Comparison:
        name = _check_key(key)
        _check_value(key, value)
        if op not in ("=", "!=") and isinstance(value, bool):
            raise FilterError(f"{op} does not apply to true/false", key.column)
        return Comparison(name, str(op), value)

    def like(self, key: Token, pattern: Token) -> Comparison:
        name = _check_key(key)
        if key_spec(name).type == "num":
            raise FilterError(f"LIKE needs a text key, {name} is numeric", key.column)
        text = self.string(pattern)
        _check_like(text, pattern.column)
        return Comparison(name, "LIKE", text)

    def in_(self, key: Token, *values: Value) -> Comparison:
        name = _check_key(key)
        if len(values) > MAX_IN_VALUES:
            raise FilterError(
                f"an IN list has {len(values)} values, more than the limit of {MAX_IN_VALUES}",
                key.column,
            )
        for value in values:
            _check_value(key, value)
        return Comparison(name, "IN", tuple(values))

    def and_(self, *operands: FilterNode) -> FilterNode:
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def or_(self, *operands: FilterNode) -> FilterNode:
        return operands[0] if len(operands) == 1 else Or(tuple(operands))


def _check_size(text: str) -> None:
    """The bounds that hold before the parser runs: length, then nesting (outside quotes)."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"filter is longer than {MAX_FILTER_CHARS} characters")
    depth = 0
    unquoted = _QUOTED.sub(lambda m: " " * len(m.group()), text)
    for column, char in enumerate(unquoted, start=1):
        if char == "(":
            depth += 1
            if depth > MAX_FILTER_DEPTH:
                raise FilterError(f"parentheses nest more than {MAX_FILTER_DEPTH} deep", column)
        elif char == ")":
            depth -= 1


def _count_terms(node: FilterNode) -> int:
    if isinstance(node, Comparison):
        return 1
    return sum(_count_terms(n) for n in node.operands)


# The trees are frozen, so one parse serves every call asking the same text (a peer repeating
# a live query); a filter that fails is parsed again each time, and raises each time. Code
# that changes a limit the parse checks must call parse_filter.cache_clear().
@functools.lru_cache(maxsize=256)
def parse_filter(text: str) -> FilterNode | None:
    """Parses a filter; None for an empty one. Raises FilterError pointing at the column."""
    if not text.strip():
        return None
    _check_size(text)
    try:
        tree = _PARSER.parse(text)
        result: FilterNode = _ToTree().transform(tree)
    except FilterError:
        raise
    except UnexpectedEOF:
        raise FilterError("filter ends too early", len(text) + 1) from None
    except UnexpectedCharacters as exc:
        where = exc.pos_in_stream or 0
        raise FilterError(f"unexpected character {text[where]!r}", exc.column) from None
    except UnexpectedInput as exc:
        token = getattr(exc, "token", None)
        if token is None or token.type == "$END":
            raise FilterError("filter ends too early", len(text.rstrip()) + 1) from None
        raise FilterError(f"unexpected {shown(str(token))}", exc.column) from None
    except LarkError as exc:
        cause = exc.__context__
        if isinstance(cause, FilterError):
            raise cause from None
        orig = getattr(exc, "orig_exc", None)
        if isinstance(orig, FilterError):
            raise orig from None
        raise FilterError("filter does not parse") from None
    terms = _count_terms(result)
    if terms > MAX_FILTER_TERMS:
        raise FilterError(
            f"filter has {terms} comparisons, more than the limit of {MAX_FILTER_TERMS}"
        )
    return result


@dataclass(frozen=True)
class OrderBy:
    """A sort key and direction."""

    key: str
    descending: bool


def parse_order_by(text: str) -> OrderBy | None:
    """Parses 'KEY [asc|desc]'; None for an empty string."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"--order-by is longer than {MAX_FILTER_CHARS} characters")
    parts = text.split()
    if not parts:
        return None
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise FilterError(f"--order-by takes 'KEY [asc|desc]', got {shown(text)}")
    if not _KEY.fullmatch(parts[0]):
        raise FilterError(f"--order-by: {shown(parts[0])} is not a key (letters, digits, _ - .)")
    _check_key(Token("KEY", parts[0], column=1))
    return OrderBy(parts[0], len(parts) == 2 and parts[1].lower() == "desc")


def filter_text(node: FilterNode) -> str:
    """A tree back as filter text that parses to the same tree (for asking peers)."""
    if isinstance(node, Comparison):
        if node.op == "IN":
            assert isinstance(node.value, tuple)
            return f"{node.key} IN ({', '.join(_value_text(v) for v in node.value)})"
        assert not isinstance(node.value, tuple)
        return f"{node.key} {node.op} {_value_text(node.value)}"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(filter_text(n) for n in node.operands) + ")"


def _value_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return f"'{value}'" if "'" not in value else f'"{value}"'


def filter_names(node: FilterNode | None, prefix: str) -> set[str]:
    """The names a filter uses under a key family, e.g. prefix "metrics." -> {"accuracy"}."""
    if node is None:
        return set()
    if isinstance(node, Comparison):
        return {node.key.removeprefix(prefix)} if node.key.startswith(prefix) else set()
    return set().union(*(filter_names(n, prefix) for n in node.operands))
