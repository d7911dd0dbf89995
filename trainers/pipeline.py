"""Resolving and calling an organization's private data pipeline.

The pipeline is the study file's `pipeline = "module:function"`, imported with the study
file's folder first on the import path. It returns (train, eval): Hugging Face
`datasets.Dataset`s or sequences of (input, target) pairs, as the study's task reads them
(trainers/tasks/). Its data stays in this process. Errors name the pipeline and the problem,
never a row or a label value.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from gridpoint.errors import PipelineError
from gridpoint.trainers.study_config import StudyConfig
from gridpoint.trainers.tasks import task_type
from gridpoint.trainers.tasks.base import Columns
from gridpoint.trainers.tasks.text_classification import LabeledTexts

__all__ = ["LabeledTexts", "check_pipeline", "load_data"]


def check_pipeline(pipeline: str, folder: Path) -> None:
    """Imports `module:function` from folder and checks the function is there, without calling
    it: a command that will need the pipeline later says what is wrong before it starts."""
    module_name = pipeline.partition(":")[0]
    was_loaded = module_name in sys.modules
    try:
        _import(pipeline, folder)
    finally:
        # Whoever loads the pipeline later imports it afresh, from its own folder.
        if not was_loaded:
            sys.modules.pop(module_name, None)


def _import(pipeline: str, pipeline_folder: Path) -> Any:
    module_name, sep, func_name = pipeline.partition(":")
    if not sep or not module_name or not func_name:
        raise PipelineError(f"pipeline {pipeline!r}: expected MODULE:FUNCTION")
    folder = str(pipeline_folder)
    sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(
            f"pipeline module {module_name!r} cannot be imported ({exc.__class__.__name__})"
        ) from None
    except Exception as exc:
        # The organization's own code failed while loading: its message, on its terminal.
        raise PipelineError(
            f"pipeline module {module_name!r} raised {exc.__class__.__name__} when imported: "
            f"{str(exc)[:300]}"
        ) from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PipelineError(
            f"pipeline {pipeline!r}: {func_name!r} is not a function of {module_name!r}"
        )
    return func


def load_data(config: StudyConfig) -> tuple[Any, Any]:
    """Calls the pipeline and returns (train, eval) as the study's task type holds them.

    For text classification: LabeledTexts with labels mapped to ids.
    """
    func = _import(config.pipeline, config.path.parent)
    try:
        result = func()
    except Exception as exc:
        # The organization's own error, shown on its own terminal; what leaves the node never
        # carries it (records hold no error text; a federation member sends only its kind).
        detail = str(exc)[:300]
        raise PipelineError(
            f"pipeline {config.pipeline!r} raised {exc.__class__.__name__}"
            + (f": {detail}" if detail else "")
        ) from None
    if not (isinstance(result, tuple) and len(result) == 2):
        raise PipelineError(f"pipeline {config.pipeline!r} must return (train, eval)")
    task = task_type(config.task)
    columns = Columns(config.text_column, config.label_column)
    train, evaluation = (
        task.read(split, columns, which)
        for split, which in zip(result, ("train", "eval"), strict=True)
    )
    return task.prepare(train, evaluation)
