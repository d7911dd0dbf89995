"""The one mapping between gridpoint's search dimensions and Optuna's distributions.

The study runs its trials on these distributions and the warm-start sampler reads a plain
Optuna search space through them, so a dimension means the same in both directions.
"""

from __future__ import annotations

from collections.abc import Mapping

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from gridpoint.schema import SearchDimension

__all__ = ["dimensions_from_distributions", "distribution_of", "distributions_of"]


def distribution_of(dim: SearchDimension) -> BaseDistribution:
    """The Optuna distribution of one dimension."""
    if dim.kind == "categorical":
        return CategoricalDistribution(list(dim.choices))
    if dim.kind == "int":
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log, step=int(dim.step or 1))
    return FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step or None)


def distributions_of(space: tuple[SearchDimension, ...]) -> dict[str, BaseDistribution]:
    """A whole search space as Optuna's {name: distribution}."""
    return {dim.name: distribution_of(dim) for dim in space}


def dimensions_from_distributions(
    space: Mapping[str, BaseDistribution],
) -> tuple[SearchDimension, ...]:
    """Optuna's {name: distribution} as search dimensions (TypeError for other kinds)."""
    dims = []
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            choices = tuple(c for c in dist.choices if c is not None)
            if len(choices) != len(dist.choices):
                raise TypeError(f"parameter {name!r}: None is not a supported choice")
            dims.append(SearchDimension(name, "categorical", choices=choices))
        elif isinstance(dist, IntDistribution):
            step = 0.0 if dist.step == 1 else float(dist.step)
            dims.append(
                SearchDimension(name, "int", float(dist.low), float(dist.high), dist.log, step)
            )
        elif isinstance(dist, FloatDistribution):
            dims.append(
                SearchDimension(name, "float", dist.low, dist.high, dist.log, dist.step or 0.0)
            )
        else:
            raise TypeError(f"parameter {name!r}: unsupported distribution {dist!r}")
    return tuple(dims)
