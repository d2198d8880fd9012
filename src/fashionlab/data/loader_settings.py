"""Data loader settings that depend on the machine: `num_workers: auto`, `pin_memory: auto`.

`auto` workers = the CPU cores this process may use divided by the devices of this node (at
least 1, at most MAX_AUTO_WORKERS); `auto` pinning = on when the trainer runs on CUDA. In-memory
arrays (Fashion-MNIST) keep `num_workers: 0` in their config: indexing an array costs less than
moving a batch between processes.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from fashionlab.errors import ConfigError

AUTO = "auto"
MAX_AUTO_WORKERS = 16


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_workers(value: Any) -> int | str:
    """`data.num_workers` as given: a count >= 0, or "auto"."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"data.num_workers={value!r} must be a whole number >= 0 or auto")
    return int(value)


def resolve_workers(value: int | str, devices: int = 1) -> int:
    """The worker count for one process: `value`, or for auto the cores per device."""
    if value != AUTO:
        return int(value)
    return max(1, min(MAX_AUTO_WORKERS, available_cores() // max(1, int(devices))))


def check_pin_memory(value: Any) -> bool | str:
    if value == AUTO or isinstance(value, bool):
        return value
    raise ConfigError(f"data.pin_memory={value!r} must be true, false or auto")


def resolve_pin_memory(value: bool | str, trainer: Any = None) -> bool:
    """`value`, or for auto: True when the trainer (without one: this machine) uses CUDA."""
    if value != AUTO:
        return bool(value)
    if trainer is not None:
        return getattr(getattr(trainer, "strategy", None), "root_device", torch.device("cpu")).type == "cuda"
    return torch.cuda.is_available()


def trainer_devices(trainer: Any) -> int:
    """Devices of this node the trainer runs on (1 without a trainer)."""
    return int(getattr(trainer, "num_devices", 1) or 1) if trainer is not None else 1
