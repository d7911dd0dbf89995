"""Which devices a study's trials train on: a user's `--devices` checked before anything runs.

Must never fall back silently: asking for a GPU that is not there is an error, not a slow
run on the CPU. `auto` is every CUDA GPU torch sees (one trial on each at a time), or the CPU.
"""

from __future__ import annotations

import re

from gridpoint.errors import ConfigError

__all__ = ["check_device", "check_devices"]

_CUDA = re.compile(r"cuda(:(\d+))?")


def check_device(requested: str, flag: str = "--device") -> str:
    """The one device name to train on (auto, cpu, cuda, cuda:N); ConfigError says what is wrong."""
    import torch

    if requested in ("auto", "cpu"):
        return requested
    match = _CUDA.fullmatch(requested)
    if match is None:
        raise ConfigError(
            f"{flag} {requested} is not a device: use auto (a GPU if there is one), "
            "cpu, cuda or cuda:N"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{flag} {requested}: torch sees no CUDA GPU on this machine; use {flag} cpu (or auto)"
        )
    index = int(match.group(2) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"{flag} {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
            f"numbered from 0"
        )
    return requested


def check_devices(requested: str, flag: str = "--devices") -> list[str]:
    """The devices trials run on, one trial per device at a time, from `auto`, `cpu` or a list.

    `auto` is cuda:0 ... cuda:N-1 when torch sees GPUs, else cpu; a list such as
    `cuda:0,cuda:1` is checked name by name (no repeats; `cuda` means cuda:0).
    """
    import torch

    names = [n.strip() for n in requested.split(",")]
    if requested.strip() == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    if "auto" in names or any(not n for n in names):
        raise ConfigError(f"{flag} {requested}: give auto, cpu, or devices like cuda:0,cuda:1")
    devices = []
    for name in names:
        checked = check_device(name, flag)
        devices.append("cuda:0" if checked == "cuda" else checked)
    if len(set(devices)) != len(devices):
        raise ConfigError(f"{flag} {requested}: a device is named twice")
    return devices
