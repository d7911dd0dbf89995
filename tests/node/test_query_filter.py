"""The filter language: what it parses into, and errors that point at the column."""

from __future__ import annotations

import pytest

from gridpoint.errors import FilterError
from gridpoint.node.store.query_filter import And, Comparison, Or, parse_filter, parse_order_by


def test_issue_example_parses_into_a_conjunction() -> None:
    tree = parse_filter(
        "task.type = 'text-classification' and metrics.accuracy > 0.8 "
        "and params.learning_rate < 1e-4 and model.base LIKE 'bert%'"
    )
    assert tree == And(
        (
            Comparison("task.type", "=", "text-classification"),
            Comparison("metrics.accuracy", ">", 0.8),
            Comparison("params.learning_rate", "<", 1e-4),
            Comparison("model.base", "LIKE", "bert%"),
        )
    )


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    assert parse_filter("kind = 'trial' or kind = 'federated' and signer = 'x'") == Or(
        (
            Comparison("kind", "=", "trial"),
            And((Comparison("kind", "=", "federated"), Comparison("signer", "=", "x"))),
        )
    )
    assert parse_filter(
        "(kind = 'trial' OR kind = 'federated') AND task.num_labels IN (2, 3)"
    ) == And(
        (
            Or((Comparison("kind", "=", "trial"), Comparison("kind", "=", "federated"))),
            Comparison("task.num_labels", "IN", (2.0, 3.0)),
        )
    )


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("task.type = ", 12),
        ("colour = 'red'", 1),
        ("metrics.accuracy > 'high'", 1),
        ("task.type == 'x'", 12),
        ("metrics.accuracy > 0.8 andd task.type = 'x'", 24),
        ("task.type = 'x' or", 19),
        ("metrics.accuracy LIKE 'x%'", 1),
    ],
)
def test_malformed_filter_points_at_the_column(text: str, column: int) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert info.value.column == column


def test_empty_filter_and_order_by() -> None:
    assert parse_filter("  ") is None
    order = parse_order_by("metrics.accuracy desc")
    assert order is not None and order.descending
    with pytest.raises(FilterError):
        parse_order_by("metrics.accuracy sideways")
