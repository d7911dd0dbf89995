"""Errors raised by trainers; each message names what is wrong in the user's terms.

    TrainerError
    ├── StudyConfigError   the study file is invalid (raised before anything trains)
    ├── PipelineError      the private pipeline cannot be found or returned unusable data
    └── ModelLoadError     the base model cannot be loaded from local files

Messages never quote data rows or label values: they name fields and counts.
"""


class TrainerError(Exception):
    """Base of every error trainers raises on purpose."""


class StudyConfigError(TrainerError):
    """The study file is invalid."""


class PipelineError(TrainerError):
    """The private data pipeline is missing, failed, or returned unusable data."""


class ModelLoadError(TrainerError):
    """The base model cannot be loaded from local files."""
