"""A study's search space as the unit cube, and prior studies placed in it.

Every transfer method works on points of [0, 1]^d: floats and ints are scaled (on a log
scale where the dimension says so), categoricals take evenly spaced positions. Placing a
prior is where its values are decided, loudly: matching.py says which of its parameters is
which dimension; each trial is then placed by its actual values on the dimensions the prior
shares with the study (the others are marginalized: the prior's surface is fitted on the
shared ones alone). A value a little outside a dimension (at most CLIP_MARGIN of its width)
is clipped to the bound; a trial with a value further out, or not among a categorical's
choices, is left out. Every clip, drop, rename and missing dimension is counted in the
MappedPrior, and a prior that cannot be used at all comes back as a PriorExclusion with the
reason: nothing is dropped or moved without saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridpoint.schema import SearchDimension
from gridpoint.trainers.transfer.matching import DimensionMatch, match_dimensions
from gridpoint.trainers.transfer.priors import ParamValue, PriorStudy

__all__ = ["CLIP_MARGIN", "MappedPrior", "PriorExclusion", "UnitSpace", "map_prior"]

#: How far outside a dimension (as a share of its width) a prior's value may be and still
#: count, clipped to the bound: just outside is still evidence about the edge.
CLIP_MARGIN = 0.05


class UnitSpace:
    """Encodes parameter dicts of a search space as points of the unit cube, and back."""

    def __init__(self, dimensions: Sequence[SearchDimension]) -> None:
        if not dimensions:
            raise ValueError("a warm start needs a search space with at least one dimension")
        self.dimensions = tuple(dimensions)

    @property
    def dim(self) -> int:
        return len(self.dimensions)

    def encode_value(self, dim: SearchDimension, value: ParamValue) -> float | None:
        """The value's coordinate, or None if it lies outside the dimension."""
        placed = self.place(dim, value)
        return None if placed is None or placed[1] else placed[0]

    def place(self, dim: SearchDimension, value: ParamValue) -> tuple[float, bool] | None:
        """(coordinate, clipped) of a value, or None when it cannot be placed in `dim`.

        A numeric value at most CLIP_MARGIN of the width outside comes back clipped to the
        bound (clipped=True); a categorical value must be one of the choices (numbers compare
        by value, so 32 and 32.0 are one choice).
        """
        if dim.kind == "categorical":
            position = _choice_index(dim.choices, value)
            if position is None:
                return None
            return position / max(len(dim.choices) - 1, 1), False
        number = _number(value)
        if number is None or (dim.log and number <= 0):
            return None
        if dim.high == dim.low:
            return (0.5, False) if math.isclose(number, dim.low) else None
        if dim.log:
            u = (math.log(number) - math.log(dim.low)) / (math.log(dim.high) - math.log(dim.low))
        else:
            u = (number - dim.low) / (dim.high - dim.low)
        if -1e-9 <= u <= 1.0 + 1e-9:
            return min(max(u, 0.0), 1.0), False
        if -CLIP_MARGIN <= u <= 1.0 + CLIP_MARGIN:
            return min(max(u, 0.0), 1.0), True
        return None

    def quantize(self, points: np.ndarray) -> np.ndarray:
        """The points moved to what decode() would make of them (ints, steps, choices)."""
        out = np.clip(np.asarray(points, dtype=float), 0.0, 1.0).copy()
        for j, dim in enumerate(self.dimensions):
            if dim.kind == "categorical":
                last = max(len(dim.choices) - 1, 1)
                out[:, j] = np.round(out[:, j] * last) / last
            elif dim.kind == "int" or dim.step:
                out[:, j] = [self._requantized(dim, u) for u in out[:, j]]
        return np.asarray(out, dtype=float)

    def _requantized(self, dim: SearchDimension, u: float) -> float:
        value = self.decode_value(dim, u)
        placed = self.place(dim, value)
        return u if placed is None else placed[0]

    def decode(self, point: np.ndarray) -> dict[str, ParamValue]:
        return {
            dim.name: self.decode_value(dim, float(u))
            for dim, u in zip(self.dimensions, np.clip(point, 0.0, 1.0), strict=True)
        }

    @staticmethod
    def decode_value(dim: SearchDimension, u: float) -> ParamValue:
        """The dimension's value at coordinate u (always inside the dimension)."""
        u = min(max(u, 0.0), 1.0)
        if dim.kind == "categorical":
            return dim.choices[int(round(u * (len(dim.choices) - 1)))]
        if dim.log:
            value = math.exp(math.log(dim.low) + u * (math.log(dim.high) - math.log(dim.low)))
        else:
            value = dim.low + u * (dim.high - dim.low)
        if dim.step:
            value = dim.low + round((value - dim.low) / dim.step) * dim.step
            if value > dim.high:
                value -= dim.step
        value = min(max(value, dim.low), dim.high)
        if dim.kind == "int":
            return min(max(int(round(value)), math.ceil(dim.low)), math.floor(dim.high))
        return float(value)

    def encode(self, params: Mapping[str, ParamValue]) -> np.ndarray | None:
        coords = []
        for dim in self.dimensions:
            if dim.name not in params:
                return None
            u = self.encode_value(dim, params[dim.name])
            if u is None:
                return None
            coords.append(u)
        return np.array(coords)


@dataclass(frozen=True)
class MappedPrior:
    """A prior placed in the unit cube: its usable trials, and how it was placed.

    `x` holds coordinates on the study dimensions listed in `dims` only (those the prior
    shares with the study); `matches` says how each study dimension was matched.
    """

    study: PriorStudy
    x: np.ndarray
    dims: tuple[int, ...]
    values: np.ndarray
    minimize: bool
    curves: tuple[tuple[tuple[int, float], ...], ...]
    trials_outside: int
    values_clipped: int
    matches: tuple[DimensionMatch, ...]
    ignored: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class PriorExclusion:
    """A prior left out, and why."""

    study: PriorStudy
    reason: str


def map_prior(
    study: PriorStudy, space: UnitSpace, most: int | None = None
) -> MappedPrior | PriorExclusion:
    """Places the prior's trials in `space`, or says why it cannot be used; with `most`, keeps
    at most that many of the trials placed, spread evenly over their ranking from the best
    (the surface they draw keeps the study's best region and its shape)."""
    matches, ignored = match_dimensions(study, space.dimensions)
    shared = [(j, m) for j, m in enumerate(matches) if m.prior_name is not None]
    if not shared:
        return PriorExclusion(study, _no_shared_reason(matches))
    points, values, curves = [], [], []
    outside = clipped = 0
    for trial in study.trials:
        coords = []
        trial_clipped = 0
        for j, match in shared:
            assert match.prior_name is not None
            placed = (
                space.place(space.dimensions[j], trial.params[match.prior_name])
                if match.prior_name in trial.params
                else None
            )
            if placed is None:
                break
            coords.append(placed[0])
            trial_clipped += placed[1]
        if len(coords) < len(shared) or not math.isfinite(trial.value):
            outside += 1
            continue
        clipped += trial_clipped
        points.append(coords)
        values.append(trial.value)
        curves.append(trial.curve)
    if not points:
        return PriorExclusion(
            study, f"none of its {len(study.trials)} trial(s) lies inside this search space"
        )
    spread = []
    if most is not None and len(values) > most:
        kept = _spread(values, most, study.direction == "minimize")
        spread.append(f"{most} of its {len(values)} trials here, spread over their ranking")
        points = [points[i] for i in kept]
        values = [values[i] for i in kept]
        curves = [curves[i] for i in kept]
    return MappedPrior(
        study=study,
        x=np.array(points, dtype=float),
        dims=tuple(j for j, _ in shared),
        values=np.array(values, dtype=float),
        minimize=study.direction == "minimize",
        curves=tuple(curves),
        trials_outside=outside,
        values_clipped=clipped,
        matches=tuple(matches),
        ignored=tuple(ignored),
        notes=_notes(matches, ignored, outside, clipped) + tuple(spread),
    )


def _spread(values: Sequence[float], most: int, minimize: bool) -> list[int]:
    """The indexes of `most` values evenly spaced over their ranking, the best first."""
    ranked = sorted(range(len(values)), key=lambda i: values[i], reverse=not minimize)
    step = (len(ranked) - 1) / max(most - 1, 1)
    return [ranked[round(k * step)] for k in range(most)]


def _no_shared_reason(matches: Sequence[DimensionMatch]) -> str:
    refused = [f"{m.dimension}: {m.note}" for m in matches if m.note != "no parameter of that name"]
    if refused:
        return "no parameter fits this search space (" + "; ".join(refused) + ")"
    return "shares no parameter with this search space"


def _notes(
    matches: Sequence[DimensionMatch], ignored: Sequence[str], outside: int, clipped: int
) -> tuple[str, ...]:
    notes = []
    for m in matches:
        if m.how == "missing":
            why = "" if m.note == "no parameter of that name" else f" ({m.note})"
            notes.append(f"{m.dimension}: not in this prior{why}, marginalized")
            continue
        if m.how != "same name":
            notes.append(f"{m.prior_name} -> {m.dimension} ({m.how})")
        if m.note:
            notes.append(f"{m.dimension}: {m.note}")
    if ignored:
        notes.append(f"{', '.join(ignored)}: not searched here, ignored")
    if clipped:
        notes.append(f"{clipped} value(s) just outside this search space clipped to its bounds")
    if outside:
        notes.append(f"{outside} trial(s) outside this search space left out")
    return tuple(notes)


def _number(value: ParamValue) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _choice_index(choices: Sequence[ParamValue], value: ParamValue) -> int | None:
    for i, choice in enumerate(choices):
        if str(choice) == str(value):
            return i
    number = _number(value) if not isinstance(value, str) else None
    if number is None:
        return None
    for i, choice in enumerate(choices):
        other = _number(choice) if not isinstance(choice, str) else None
        if other is not None and math.isclose(number, other, rel_tol=1e-9, abs_tol=1e-12):
            return i
    return None
