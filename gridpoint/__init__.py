"""gridpoint: federated experiment sharing for teams that tune and fine-tune models.

`import gridpoint` is the public API for your own Python code: every name reachable by
following `__all__` from here is public; every other module is internal and may change.

    import gridpoint
    sampler = gridpoint.from_catalog("~/gridpoint", search_space, task=..., objective_metric=...)

The training-side names (WarmStartSampler, CurvePruner, PriorStudy, from_catalog) load
Optuna and the surrogate models on first use, so importing gridpoint itself stays light; so
do the integrations (`gridpoint.integrations.transformers.GridpointCallback`, a Hugging Face
Trainer callback, and `gridpoint.integrations.optuna.Publisher`, an Optuna study callback).

The package is organized as follows:

- schema/: the record types every layer shares (RunRecord, TaskDescriptor, ...).
- errors.py: the exception tree under GridpointError.
- v1/: generated protobuf code of the gridpoint.v1 wire (from proto/gridpoint/v1).
- trainers/: local fine-tuning and tuning studies; knows nothing of nodes or the wire.
- node/: the long-lived daemon, its store, its peers and the command line.
- federation/: training together over Flower (`gridpoint fed ...`).
- integrations/: runs of a team's own code brought in (Trainer callback, Optuna publisher,
  `gridpoint import`).
- __main__.py: `python -m gridpoint` runs the command line.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from gridpoint.errors import GridpointError
from gridpoint.schema import (
    BaseModelInfo,
    CurvePoint,
    ParamValue,
    RunRecord,
    SearchDimension,
    TaskDescriptor,
    record_from_json,
    record_to_json,
    validate_record,
)

if TYPE_CHECKING:
    from gridpoint.node.tuning.warm_start import from_catalog
    from gridpoint.trainers.transfer.priors import PriorStudy, PriorTrial
    from gridpoint.trainers.transfer.pruner import CurvePruner
    from gridpoint.trainers.transfer.sampler import WarmStartSampler

try:
    __version__ = version("gridpoint")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "BaseModelInfo",
    "CurvePoint",
    "CurvePruner",
    "GridpointError",
    "ParamValue",
    "PriorStudy",
    "PriorTrial",
    "RunRecord",
    "SearchDimension",
    "TaskDescriptor",
    "WarmStartSampler",
    "__version__",
    "from_catalog",
    "integrations",
    "record_from_json",
    "record_to_json",
    "validate_record",
]

_LAZY = {
    "from_catalog": "gridpoint.node.tuning.warm_start",
    "CurvePruner": "gridpoint.trainers.transfer.pruner",
    "PriorStudy": "gridpoint.trainers.transfer.priors",
    "PriorTrial": "gridpoint.trainers.transfer.priors",
    "WarmStartSampler": "gridpoint.trainers.transfer.sampler",
}


def __getattr__(name: str) -> Any:
    if name == "integrations":  # a subpackage: gridpoint.integrations.transformers, .optuna
        return importlib.import_module("gridpoint.integrations")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gridpoint' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
