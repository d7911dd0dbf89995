"""The catalog filter language: parsed by a real grammar into a small typed tree.

    task.type = 'text-classification' and metrics.accuracy > 0.8
        and params.learning_rate < 1e-4 and model.base LIKE 'bert%'

Keys (gridpoint.node.store.keys): kind, signer, study, status, period, task.<field>,
model.<field>, params.<name>, metrics.<name>. Operators: = != < <= > >= LIKE IN; `and` binds tighter than `or`;
parentheses group. Values: 'single' or "double" quoted strings, numbers, true, false.

The tree is turned into parameterized SQL by the store (gridpoint.node.store.sql_store); nothing a filter
says ever reaches SQL as text. Errors point at the column where the filter goes wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from gridpoint.errors import FilterError
from gridpoint.node.store.keys import key_spec

__all__ = [
    "And",
    "Comparison",
    "FilterNode",
    "Or",
    "OrderBy",
    "Value",
    "parse_filter",
    "parse_order_by",
]

Value = str | float | bool


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


@v_args(inline=True)
class _ToTree(Transformer[Token, FilterNode]):
    def string(self, token: Token) -> str:
        return str(token)[1:-1]

    def number(self, token: Token) -> float:
        return float(token)

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
        return Comparison(name, "LIKE", str(pattern)[1:-1])

    def in_(self, key: Token, *values: Value) -> Comparison:
        name = _check_key(key)
        for value in values:
            _check_value(key, value)
        return Comparison(name, "IN", tuple(values))

    def and_(self, *operands: FilterNode) -> FilterNode:
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def or_(self, *operands: FilterNode) -> FilterNode:
        return operands[0] if len(operands) == 1 else Or(tuple(operands))


def parse_filter(text: str) -> FilterNode | None:
    """Parses a filter; None for an empty one. Raises FilterError pointing at the column."""
    if not text.strip():
        return None
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
        raise FilterError(f"unexpected {str(token)!r}", exc.column) from None
    except LarkError as exc:
        cause = exc.__context__
        if isinstance(cause, FilterError):
            raise cause from None
        orig = getattr(exc, "orig_exc", None)
        if isinstance(orig, FilterError):
            raise orig from None
        raise FilterError("filter does not parse") from None
    return result


@dataclass(frozen=True)
class OrderBy:
    """A sort key and direction."""

    key: str
    descending: bool


def parse_order_by(text: str) -> OrderBy | None:
    """Parses 'KEY [asc|desc]'; None for an empty string."""
    parts = text.split()
    if not parts:
        return None
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise FilterError(f"--order-by takes 'KEY [asc|desc]', got {text!r}")
    _check_key(Token("KEY", parts[0], column=1))
    return OrderBy(parts[0], len(parts) == 2 and parts[1].lower() == "desc")
