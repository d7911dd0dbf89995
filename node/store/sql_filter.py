"""The filter language in SQL: a parsed filter tree becomes a parameterized condition.

Every value reaches SQL as a bound parameter, never as text; every key's column comes from
the one key registry (gridpoint.node.store.keys).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_

from gridpoint.node.store.keys import key_spec
from gridpoint.node.store.models import METRICS as M
from gridpoint.node.store.models import PARAMS as P
from gridpoint.node.store.models import RECORDS as R
from gridpoint.node.store.query_filter import And, Comparison, FilterNode, Value

__all__ = ["condition", "order_columns"]


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "IN":
        membership: ColumnElement[bool] = column.in_(list(value))
        return membership
    if op == "LIKE":
        like: ColumnElement[bool] = column.like(value)
        return like
    ops = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    result: ColumnElement[bool] = ops[op](value)
    return result


def _param_value_condition(op: str, value: Value | tuple[Value, ...]) -> ColumnElement[bool]:
    if op == "IN":
        assert isinstance(value, tuple)
        return or_(*(_param_value_condition("=", v) for v in value))
    assert not isinstance(value, tuple)
    if isinstance(value, str):
        return _compare(P.c.str_value, op, value)
    return _compare(P.c.num_value, op, float(value))


def _column(key: str) -> Any:
    column = key_spec(key).column
    assert column is not None, f"{key} has no column of its own"
    return R.c[column]


def condition(node: FilterNode) -> ColumnElement[bool]:
    if not isinstance(node, Comparison):
        parts = [condition(n) for n in node.operands]
        return and_(*parts) if isinstance(node, And) else or_(*parts)
    if node.key.startswith("params."):
        name = node.key.removeprefix("params.")
        return exists().where(
            P.c.record_seq == R.c.seq, P.c.name == name, _param_value_condition(node.op, node.value)
        )
    if node.key.startswith("metrics."):
        name = node.key.removeprefix("metrics.")
        return exists().where(
            M.c.record_seq == R.c.seq, M.c.name == name, _compare(M.c.value, node.op, node.value)
        )
    return _compare(_column(node.key), node.op, node.value)


def order_columns(stmt: Any, key: str) -> tuple[Any, list[Any]]:
    """Adds what sorting by key needs to stmt; returns it with the sort columns.

    Metrics are sorted by SqlStore._query_by_metric, which can use their index.
    """
    if key.startswith("params."):
        p = P.alias("order_param")
        stmt = stmt.outerjoin(p, and_(p.c.record_seq == R.c.seq, p.c.name == key.split(".", 1)[1]))
        return stmt, [p.c.num_value, p.c.str_value]
    return stmt, [_column(key)]
