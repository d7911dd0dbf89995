"""Prior studies as the transfer methods see them: trials with parameters and a value.

A prior study is a set of finished trials of some earlier study on a related task (this
organization's or a peer's); where they come from is the caller's business (gridpoint's
node builds them from catalog records). Values are in the objective's own units; the
direction says which way is better. A prior whose values were released with noise (a
differentially private study) says how much: `noise` is the noise's standard deviation in the
objective's units, and its (epsilon, delta) ride along for the prior report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gridpoint.schema import SearchDimension

__all__ = ["PriorStudy", "PriorTrial"]

ParamValue = float | int | str | bool


@dataclass(frozen=True)
class PriorTrial:
    """One finished trial: its parameters, final objective value and objective curve."""

    params: Mapping[str, ParamValue]
    value: float
    curve: tuple[tuple[int, float], ...] = ()  # (step, objective) in step order


@dataclass(frozen=True)
class PriorStudy:
    """The trials of one prior study and the search space it declared (if it published one)."""

    label: str
    trials: tuple[PriorTrial, ...]
    direction: str = "maximize"
    search_space: tuple[SearchDimension, ...] = ()
    #: How alike its task is to the new one, in (0, 1]: the weight it starts with.
    similarity: float = 1.0
    #: Parameter renames, prior name -> this study's name (explicit config only).
    renames: Mapping[str, str] = field(default_factory=dict)
    #: Standard deviation of the noise each value was released with, in the objective's
    #: units (0: exact values). See reliability.py for what it does to the prior's weight.
    noise: float = 0.0
    #: The privacy guarantee its values were released under, for the report (None: exact).
    epsilon: float | None = None
    delta: float | None = None
