"""Cluster-environment plugins for the Trainer (conf/trainer/slurm.yaml)."""

from __future__ import annotations

import signal

from lightning.pytorch.plugins.environments import SLURMEnvironment

from fashionlab.errors import ConfigError


def slurm_plugins(auto_requeue: bool = True, requeue_signal: str = "SIGUSR1") -> list[SLURMEnvironment]:
    """Lightning's SLURMEnvironment with the given requeue settings when running inside a SLURM job
    step (srun), else no plugin (plain DDP), so the same config also runs outside SLURM."""
    try:
        signum = signal.Signals[requeue_signal]
    except KeyError:
        raise ConfigError(f"trainer.plugins.requeue_signal is {requeue_signal!r}; expected a signal "
                          "name such as SIGUSR1") from None
    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=bool(auto_requeue), requeue_signal=signum)]
