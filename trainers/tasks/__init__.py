"""The task types a study can fine-tune, one module each.

The code is organized as follows:

- base.py: what a task type is to the trainer (data, model class, batches, metrics, descriptor).
- classification.py: accuracy / macro F1 scoring shared by the one-label-per-example tasks.
- text_classification.py, causal_lm.py, token_classification.py, image_classification.py.
"""

from __future__ import annotations

from gridpoint.errors import StudyConfigError
from gridpoint.trainers.tasks.base import TaskType

__all__ = ["task_type"]


def task_type(name: str) -> TaskType:
    """A fresh instance of the task type named `name` (the study file's `task`)."""
    from gridpoint.trainers.tasks.causal_lm import CausalLM
    from gridpoint.trainers.tasks.image_classification import ImageClassification
    from gridpoint.trainers.tasks.text_classification import TextClassification
    from gridpoint.trainers.tasks.token_classification import TokenClassification

    kinds: dict[str, type[TaskType]] = {
        k.name: k for k in (TextClassification, CausalLM, TokenClassification, ImageClassification)
    }
    if name not in kinds:
        raise StudyConfigError(f"task {name!r} is not one of {', '.join(kinds)}")
    return kinds[name]()
