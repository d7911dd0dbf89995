"""The filter language in SQL: a parsed filter tree becomes a parameterized condition.

Every value reaches SQL as a bound parameter, never as text; every key's column comes from
the one key registry (gridpoint.node.store.keys). Must never build SQL whose meaning differs
between SQLite and PostgreSQL (LIKE is spelled out here for that).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Float,
    Select,
    and_,
    any_,
    bindparam,
    exists,
    func,
    or_,
    select,
    union_all,
)

from gridpoint.node.store.keys import key_spec
from gridpoint.node.store.models import METRICS as M
from gridpoint.node.store.models import PARAMS as P
from gridpoint.node.store.models import RECORDS as R
from gridpoint.node.store.query_filter import And, Comparison, FilterNode, OrderBy, Value

__all__ = ["MetricWalk", "condition", "metric_walk", "order_columns", "query_statements"]

# Comparisons of the sorted metric that bound its walk (one row per record and metric, so
# `value op v` on the walked row means the same as the comparison's own EXISTS).
_RANGE_OPS = frozenset({"=", "<", "<=", ">", ">="})
_BOTH = (False, True)


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "IN":
        membership: ColumnElement[bool] = column.in_(list(value))
        return membership
    if op == "LIKE":
        # One meaning on every database (see query_filter): SQLite's LIKE ignores ASCII case
        # and has no escape character, PostgreSQL's is case-sensitive and escapes with "\".
        like: ColumnElement[bool] = func.lower(column).like(value.lower(), escape="\\")
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


def query_statements(where: FilterNode | None, order_by: OrderBy | None) -> list[Select[bytes]]:
    """The statements whose envelope rows, read one after the other, answer a query in order
    (the caller applies the limit, and stops reading at its byte budget)."""
    return list(_statements(where, order_by, _value_types(where)))


def _value_types(node: FilterNode | None) -> tuple[type, ...]:
    """The types of a filter's values, in order: `x = true` and `x = 1` are equal trees."""
    if node is None:
        return ()
    if isinstance(node, Comparison):
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        return tuple(type(v) for v in values)
    return tuple(t for n in node.operands for t in _value_types(n))


# Built once per filter and order (the statements are immutable; building the filter's SQL
# expression was about 5% of answering a live query); `types` keeps trees that are equal
# but differ in their values' types apart.
@functools.lru_cache(maxsize=256)
def _statements(
    where: FilterNode | None, order_by: OrderBy | None, types: tuple[type, ...]
) -> tuple[Select[bytes], ...]:
    if order_by is not None and order_by.key.startswith("metrics."):
        return tuple(_by_metric(where, order_by))
    cond = condition(where) if where is not None else None
    stmt = select(R.c.envelope)
    if cond is not None:
        stmt = stmt.where(cond)
    if order_by is not None:
        stmt, keys = order_columns(stmt, order_by.key)
        stmt = stmt.order_by(
            *((k.desc() if order_by.descending else k.asc()).nulls_last() for k in keys),
            R.c.seq,
        )
    else:
        stmt = stmt.order_by(R.c.seq)
    return (stmt,)


def _requires(node: FilterNode, key: str) -> bool:
    """Whether only records that hold `key` (a metric) can match: every comparison of a
    metric asks for its row (condition() above), so one in a conjunction, or in each branch
    of a disjunction, rules the others out."""
    if isinstance(node, Comparison):
        return node.key == key
    if isinstance(node, And):
        return any(_requires(n, key) for n in node.operands)
    return all(_requires(n, key) for n in node.operands)


@dataclass(frozen=True)
class MetricWalk:
    """On PostgreSQL, the records that hold a metric, in its order, read window by window: each window a
    bounded walk of the (name, value, record_seq) index alone (keyset on (value, record_seq)),
    and the records it walked that match the rest of the filter, looked up by seq. The database can
    then not choose to join and sort every match (PostgreSQL does when it misjudges how many
    match, and hashes every parameter row a filter names), and an answer costs the windows it
    reads, however many records there are. SQLite needs none of it: its planner walks the
    index of the one statement (query_statements) in a nested loop and stops at the limit,
    which the windows' extra statements would only slow down.

    The statements are built once per walk (metric_walk keeps the walks of the last filters);
    a window's ends are bound parameters: AFTER_VALUE and AFTER_SEQ (the last row of the window
    before, when `after`), EDGE_VALUE and EDGE_SEQ (its own last row, when `edge`), SIZE; and
    WANTED, the rows the answer still needs."""

    name: str
    descending: bool
    bounds: tuple[Comparison, ...]
    rest: tuple[FilterNode, ...]

    def _walked(self, after: bool, edge: bool) -> Select[tuple[float, int]]:
        where = [M.c.name == self.name, *(_compare(M.c.value, b.op, b.value) for b in self.bounds)]
        if edge:
            value, seq = _keyset("edge")
            stop = M.c.value >= value if self.descending else M.c.value <= value
            before = M.c.value > value if self.descending else M.c.value < value
            where += [stop, or_(before, M.c.record_seq <= seq)]
        order = _metric_order(M.c.value, M.c.record_seq, self.descending)
        if not after:
            walked = select(M.c.value, M.c.record_seq).where(*where)
            return walked if edge else walked.order_by(*order).limit(bindparam("size"))
        # After (value, seq): the rest of its tie group, then the values past it, each a
        # range of the index it can seek to (as one condition, PostgreSQL read the whole tie
        # group again at every window, and sorted it when descending).
        value, seq = _keyset("after")
        past = M.c.value < value if self.descending else M.c.value > value
        parts = [
            select(M.c.value, M.c.record_seq).where(*where, *rest)
            for rest in ([M.c.value == value, M.c.record_seq > seq], [past])
        ]
        if not edge:  # the window is its range when bounded by its edge: no order needed
            parts = [p.order_by(*order).limit(bindparam("size")) for p in parts]
        walk = union_all(*parts).subquery("walk")
        walked = select(walk.c.value, walk.c.record_seq)
        if edge:
            return walked
        ordered = _metric_order(walk.c.value, walk.c.record_seq, self.descending)
        return walked.order_by(*ordered).limit(bindparam("size"))

    def _matching(self, after: bool, edge: bool) -> Select[Any]:
        # The walked seqs stay in the database (an array of the window's walk): a list of
        # thousands of seqs through the driver cost more than looking them up.
        walk = self._walked(after, edge).subquery("walked")
        seqs = select(walk.c.record_seq).scalar_subquery()
        # Its own name: the rest's comparisons of metrics read the table in subqueries.
        m = M.alias("walked_metric")
        return (
            select(R.c.seq, R.c.envelope)
            .select_from(R.join(m, and_(m.c.record_seq == R.c.seq, m.c.name == self.name)))
            .where(R.c.seq == any_(func.array(seqs)), *(condition(c) for c in self.rest))
            .order_by(*_metric_order(m.c.value, R.c.seq, self.descending))
            .limit(bindparam("wanted"))
        )

    @functools.cached_property
    def _edges(self) -> dict[bool, Select[tuple[float, int]]]:
        return {a: self._walked(a, False).offset(bindparam("size") - 1).limit(1) for a in _BOTH}

    @functools.cached_property
    def _matches(self) -> dict[tuple[bool, bool], Select[Any]]:
        return {(a, e): self._matching(a, e) for a in _BOTH for e in _BOTH}

    def edge(self, after: bool) -> Select[tuple[float, int]]:
        """The window's last row (value, record_seq); none when the walk ends before it."""
        return self._edges[after]

    def matching(self, after: bool, edge: bool, columns: tuple[Any, ...] = ()) -> Select[Any]:
        """Of the window's records, the first WANTED that the rest of the filter matches, in
        the walk's order: seq, envelope, columns. The window ends at its edge when there is
        one, otherwise SIZE rows on. The windows must be read in one snapshot (SqlStore reads
        in REPEATABLE READ on PostgreSQL): a record stored between two statements would
        otherwise push a walked one out of a window, or bring it back in the next."""
        return self._matches[after, edge].add_columns(*columns)


def _metric_order(value: Any, seq: Any, descending: bool) -> tuple[Any, Any]:
    """A metric's order: by its value, ties by the record's storage order."""
    return (value.desc() if descending else value.asc(), seq)


def _keyset(end: str) -> tuple[BindParameter[float], BindParameter[int]]:
    """The bound (value, record_seq) of a window's end: "after" or "edge"."""
    return bindparam(f"{end}_value", type_=Float), bindparam(f"{end}_seq", type_=BigInteger)


def metric_walk(where: FilterNode | None, order_by: OrderBy | None) -> MetricWalk | None:
    """The walk that stands for query_statements()'s first statement, when it is a metric's
    ranked walk (the same rows in the same order)."""
    if order_by is None or not order_by.key.startswith("metrics."):
        return None
    return _metric_walk(where, order_by, _value_types(where))


# Kept like _statements (a walk builds its statements once), and for the same reason keyed by
# the types of the filter's values.
@functools.lru_cache(maxsize=256)
def _metric_walk(
    where: FilterNode | None, order_by: OrderBy, types: tuple[type, ...]
) -> MetricWalk:
    bounds, rest = _split_bounds(where, order_by)
    return MetricWalk(order_by.key.split(".", 1)[1], order_by.descending, bounds, rest)


def _split_bounds(
    where: FilterNode | None, order_by: OrderBy
) -> tuple[tuple[Comparison, ...], tuple[FilterNode, ...]]:
    """The filter's comparisons of the sorted metric in its top-level conjunction (they bound
    the walk), and the rest of the conjunction."""
    conjuncts = list(where.operands) if isinstance(where, And) else [] if where is None else [where]
    bounds = tuple(
        c
        for c in conjuncts
        if isinstance(c, Comparison) and c.key == order_by.key and c.op in _RANGE_OPS
    )
    return bounds, tuple(c for c in conjuncts if not any(c is b for b in bounds))


def _by_metric(where: FilterNode | None, order_by: OrderBy) -> list[Select[bytes]]:
    """Sorted by a metric: walk the (name, value, record_seq) index, so a limit stops the walk
    instead of sorting every match; records without the metric follow (nulls last). The filter's own
    bounds on that metric (in its top-level conjunction) bound the walk itself, and when the
    filter compares the metric at all, no record without it can match: no second statement."""
    name = order_by.key.split(".", 1)[1]
    m = M.alias("order_metric")
    bounds, rest = _split_bounds(where, order_by)
    ranked = (
        select(R.c.envelope)
        .select_from(m.join(R, R.c.seq == m.c.record_seq))
        .where(m.c.name == name, *(_compare(m.c.value, b.op, b.value) for b in bounds))
        .order_by(*_metric_order(m.c.value, R.c.seq, order_by.descending))
    )
    if rest:
        ranked = ranked.where(and_(*(condition(c) for c in rest)))
    if where is not None and _requires(where, order_by.key):
        return [ranked]
    missing = (
        select(R.c.envelope)
        .where(~exists().where(M.c.record_seq == R.c.seq, M.c.name == name))
        .order_by(R.c.seq)
    )
    if where is not None:
        missing = missing.where(condition(where))
    return [ranked, missing]
