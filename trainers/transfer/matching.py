"""Which parameter of a prior study is which dimension of the new study: names, types, ranges.

Organizations name and declare the same hyperparameter differently: `lr` or `learning_rate`,
a batch size as an int or as categorical choices, ranges that only overlap, a parameter one
side does not tune at all. A prior is used through the dimensions it shares with the study.
Each study dimension is matched, in this order, by an explicit rename from the study file, by
the same name, or by the same normalized name (`normalized_name`: case, separators and
camelCase ignored, a few abbreviations spelled out, counting words like `num_` dropped). A
matched pair must have compatible kinds (numbers with numbers, numeric choices with numbers,
choices that overlap) and ranges that overlap; a dimension without such a partner is missing
for that prior, which the sampler marginalizes. Every decision is returned with how it was
made, for the prior report.

Decides only which names correspond; where values land (and which are clipped or dropped) is
space.py's business. Knows nothing of Optuna or of where priors come from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gridpoint.schema import SearchDimension
from gridpoint.trainers.transfer.priors import ParamValue, PriorStudy

__all__ = ["DimensionMatch", "declared_dimensions", "match_dimensions", "normalized_name"]

#: Abbreviations spelled out, token by token.
_EXPANSIONS = {
    "lr": ("learning", "rate"),
    "bs": ("batch", "size"),
    "wd": ("weight", "decay"),
    "mom": ("momentum",),
}
#: Words that say nothing about which parameter it is.
_NOISE = frozenset(
    {"hp", "hparam", "param", "params", "num", "n", "nb", "number", "per", "device", "train"}
)


def normalized_name(name: str) -> str:
    """The name with case, separators, camelCase, plurals and counting words taken out.

    `lr_log` and `learning_rate_log`, `num_layers` and `n_layers`, `maxDepthIndex` and
    `max_depth_index`, `per_device_train_batch_size` and `bs` each normalize alike.
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    tokens: list[str] = []
    for token in re.split(r"[^a-z0-9]+", spaced.lower()):
        if not token or token in _NOISE:
            continue
        for word in _EXPANSIONS.get(token, (token,)):
            tokens.append(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return "".join(tokens) or name.lower()


@dataclass(frozen=True)
class DimensionMatch:
    """How one dimension of the study was matched in one prior study."""

    dimension: str
    #: The prior's parameter name; None when the prior has no usable partner for it.
    prior_name: str | None
    #: "same name", "renamed by config", "normalized name" or "missing".
    how: str
    #: The prior's declaration of it (None when missing).
    declared: SearchDimension | None = None
    #: Why it is missing, or how the declarations differ ("" when they agree).
    note: str = ""


def declared_dimensions(study: PriorStudy) -> dict[str, SearchDimension]:
    """The prior's dimensions by name: as it declared them, or as its trials' values show."""
    if study.search_space:
        return {d.name: d for d in study.search_space}
    seen: dict[str, list[ParamValue]] = {}
    for trial in study.trials:
        for name, value in trial.params.items():
            seen.setdefault(name, []).append(value)
    dims = {}
    for name, values in seen.items():
        numbers = [float(v) for v in values if _is_number(v)]
        if len(numbers) == len(values):
            kind = "int" if all(isinstance(v, int) for v in values) else "float"
            dims[name] = SearchDimension(name, kind, min(numbers), max(numbers))
        else:
            dims[name] = SearchDimension(name, "categorical", choices=tuple(dict.fromkeys(values)))
    return dims


def match_dimensions(
    study: PriorStudy, dimensions: Sequence[SearchDimension]
) -> tuple[list[DimensionMatch], list[str]]:
    """One DimensionMatch per study dimension, and the prior's parameters left unmatched."""
    declared = declared_dimensions(study)
    renamed = _invert(study.renames, declared)
    by_normal: dict[str, list[str]] = {}
    for name in sorted(declared):
        by_normal.setdefault(normalized_name(name), []).append(name)
    taken: set[str] = set()
    matches = []
    for dim in dimensions:
        candidates = []
        if dim.name in renamed:
            candidates.append((renamed[dim.name], "renamed by config"))
        if dim.name in declared and dim.name not in study.renames:
            candidates.append((dim.name, "same name"))
        candidates.extend(
            (name, "normalized name")
            for name in by_normal.get(normalized_name(dim.name), [])
            if name not in study.renames
        )
        match = _first_compatible(dim, candidates, declared, taken)
        if match.prior_name is not None:
            taken.add(match.prior_name)
        matches.append(match)
    return matches, sorted(set(declared) - taken)


def _invert(renames: Mapping[str, str], declared: Mapping[str, SearchDimension]) -> dict[str, str]:
    return {ours: theirs for theirs, ours in renames.items() if theirs in declared}


def _first_compatible(
    dim: SearchDimension,
    candidates: list[tuple[str, str]],
    declared: Mapping[str, SearchDimension],
    taken: set[str],
) -> DimensionMatch:
    refusals = []
    for name, how in candidates:
        if name in taken:
            continue
        theirs = declared[name]
        problem = _incompatibility(theirs, dim)
        if problem:
            refusals.append(f"{name!r} {problem}")
            continue
        return DimensionMatch(dim.name, name, how, theirs, _difference(theirs, dim))
    note = "; ".join(refusals) if refusals else "no parameter of that name"
    return DimensionMatch(dim.name, None, "missing", None, note)


def _is_number(value: ParamValue) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric_choices(dim: SearchDimension) -> bool:
    return bool(dim.choices) and all(_is_number(c) for c in dim.choices)


def _span(dim: SearchDimension) -> tuple[float, float] | None:
    """The numeric range a dimension covers, or None when it is not numeric."""
    if dim.kind in ("int", "float"):
        return dim.low, dim.high
    if _numeric_choices(dim):
        numbers = [float(c) for c in dim.choices]
        return min(numbers), max(numbers)
    return None


def _incompatibility(theirs: SearchDimension, ours: SearchDimension) -> str:
    """Why the prior's dimension cannot stand for ours ("" when it can)."""
    if ours.kind == "categorical" and theirs.kind == "categorical":
        mine = {str(c) for c in ours.choices}
        if not mine & {str(c) for c in theirs.choices}:
            return "has none of this study's choices"
        return ""
    span_theirs, span_ours = _span(theirs), _span(ours)
    if span_theirs is None or span_ours is None:
        return f"is {theirs.kind} there, {ours.kind} here"
    if span_theirs[1] < span_ours[0] or span_theirs[0] > span_ours[1]:
        return (
            f"range [{span_theirs[0]:g}, {span_theirs[1]:g}] there does not overlap "
            f"[{span_ours[0]:g}, {span_ours[1]:g}] here"
        )
    return ""


def _difference(theirs: SearchDimension, ours: SearchDimension) -> str:
    parts = []
    if theirs.kind != ours.kind:
        parts.append(f"{theirs.kind} there, {ours.kind} here")
    span_theirs, span_ours = _span(theirs), _span(ours)
    if span_theirs and span_ours and span_theirs != span_ours:
        parts.append(f"range [{span_theirs[0]:g}, {span_theirs[1]:g}] there")
    return ", ".join(parts)
