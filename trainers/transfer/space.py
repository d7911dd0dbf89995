"""A study's search space as the unit cube, and prior studies mapped into it.

Every transfer method works on points of [0, 1]^d: floats and ints are scaled (on a log
scale where the dimension says so), categoricals take evenly spaced positions. Mapping a
prior is where compatibility is decided, loudly: a prior's trials are placed by their actual
parameter values (so a prior that searched a different range lands where its values are),
renamed only by explicit config; trials outside this space are left out and counted; a prior
with a missing or differently typed parameter, or with no trial left, is left out with the
reason. Nothing is dropped without saying so in the MappedPrior or PriorExclusion returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gridpoint.schema import SearchDimension
from gridpoint.trainers.transfer.priors import ParamValue, PriorStudy

__all__ = ["MappedPrior", "PriorExclusion", "UnitSpace", "map_prior"]


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
        if dim.kind == "categorical":
            names = [str(c) for c in dim.choices]
            if str(value) not in names:
                return None
            return names.index(str(value)) / max(len(names) - 1, 1)
        if isinstance(value, (str, bool)):
            return None
        number = float(value)
        tolerance = 1e-9 * max(abs(dim.low), abs(dim.high), 1.0)
        if not dim.low - tolerance <= number <= dim.high + tolerance:
            return None
        if dim.high == dim.low:
            return 0.5
        if dim.log:
            return (math.log(number) - math.log(dim.low)) / (math.log(dim.high) - math.log(dim.low))
        return (number - dim.low) / (dim.high - dim.low)

    def decode(self, point: np.ndarray) -> dict[str, ParamValue]:
        params: dict[str, ParamValue] = {}
        for dim, u in zip(self.dimensions, np.clip(point, 0.0, 1.0), strict=True):
            if dim.kind == "categorical":
                params[dim.name] = dim.choices[int(round(u * (len(dim.choices) - 1)))]
                continue
            if dim.log:
                value = math.exp(math.log(dim.low) + u * (math.log(dim.high) - math.log(dim.low)))
            else:
                value = dim.low + u * (dim.high - dim.low)
            if dim.step:
                value = dim.low + round((value - dim.low) / dim.step) * dim.step
            value = min(max(value, dim.low), dim.high)
            params[dim.name] = int(round(value)) if dim.kind == "int" else float(value)
        return params

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
    """A prior placed in the unit cube: its usable trials, and what mapping it took."""

    study: PriorStudy
    x: np.ndarray
    values: np.ndarray
    minimize: bool
    curves: tuple[tuple[tuple[int, float], ...], ...]
    trials_outside: int
    notes: tuple[str, ...]


@dataclass(frozen=True)
class PriorExclusion:
    """A prior left out, and why."""

    study: PriorStudy
    reason: str


def _kind_fits(prior: SearchDimension, ours: SearchDimension) -> bool:
    numeric = ("float", "int")
    return (prior.kind in numeric and ours.kind in numeric) or prior.kind == ours.kind


def map_prior(study: PriorStudy, space: UnitSpace) -> MappedPrior | PriorExclusion:
    """Places the prior's trials in `space`, or says why it cannot be used."""
    renamed = {study.renames.get(d.name, d.name): d for d in study.search_space}
    notes: list[str] = [f"renamed {a} -> {b}" for a, b in sorted(study.renames.items())]
    for dim in space.dimensions:
        declared = renamed.get(dim.name)
        if declared is None:
            if study.search_space and not any(
                dim.name in _renamed(t.params, study.renames) for t in study.trials
            ):
                return PriorExclusion(study, f"has no parameter {dim.name!r}")
            continue
        if not _kind_fits(declared, dim):
            return PriorExclusion(
                study, f"parameter {dim.name!r} is {declared.kind} there, {dim.kind} here"
            )
        if declared.kind != "categorical" and (declared.low, declared.high) != (dim.low, dim.high):
            notes.append(
                f"{dim.name} range [{declared.low:g}, {declared.high:g}] placed on [{dim.low:g}, {dim.high:g}]"
            )
    points, values, curves = [], [], []
    outside = 0
    missing: set[str] = set()
    for trial in study.trials:
        params = _renamed(trial.params, study.renames)
        missing.update(d.name for d in space.dimensions if d.name not in params)
        point = space.encode(params)
        if point is None or not math.isfinite(trial.value):
            outside += 1
            continue
        points.append(point)
        values.append(trial.value)
        curves.append(trial.curve)
    if not points:
        if missing:
            return PriorExclusion(study, f"its trials lack {', '.join(sorted(missing))}")
        return PriorExclusion(
            study, f"none of its {len(study.trials)} trial(s) lies inside this search space"
        )
    if outside:
        notes.append(f"{outside} trial(s) outside this search space left out")
    return MappedPrior(
        study=study,
        x=np.array(points),
        values=np.array(values),
        minimize=study.direction == "minimize",
        curves=tuple(curves),
        trials_outside=outside,
        notes=tuple(notes),
    )


def _renamed(params: Mapping[str, ParamValue], renames: Mapping[str, str]) -> dict[str, ParamValue]:
    return {renames.get(k, k): v for k, v in params.items()}
