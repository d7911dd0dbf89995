"""Which device a trial trains on: a user's `--device` checked before anything runs.

Must never fall back silently: asking for a GPU that is not there is an error, not a slow
run on the CPU.
"""

from __future__ import annotations

import re

from gridpoint.errors import ConfigError

__all__ = ["check_device"]

_CUDA = re.compile(r"cuda(:(\d+))?")


def check_device(requested: str) -> str:
    """The device name to train on (auto, cpu, cuda, cuda:N); ConfigError says what is wrong."""
    import torch

    if requested in ("auto", "cpu"):
        return requested
    match = _CUDA.fullmatch(requested)
    if match is None:
        raise ConfigError(
            f"--device {requested} is not a device: use auto (a GPU if there is one), "
            "cpu, cuda or cuda:N"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--device {requested}: torch sees no CUDA GPU on this machine; "
            "use --device cpu (or auto)"
        )
    index = int(match.group(2) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
            f"numbered from 0"
        )
    return requested
