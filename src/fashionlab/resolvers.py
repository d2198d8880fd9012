"""OmegaConf resolvers used by the project's configs (registered when `fashionlab` is imported)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def multirun_group() -> str | None:
    """Name of the Hydra multirun folder (e.g. `2024-05-01_12-00-00`) inside a multirun job, else None.

    `conf/logger/wandb.yaml` uses it as the W&B group, so the runs of one multirun are compared
    together on the dashboard.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or not hydra_cfg.runtime.get("output_dir"):
        return None
    depth = len(Path(str(hydra_cfg.sweep.subdir)).parts)  # the job's folder below the multirun folder
    return Path(hydra_cfg.runtime.output_dir).parents[max(depth - 1, 0)].name


def register() -> None:
    """Register every resolver the configs use (before Hydra composes them)."""
    from fashionlab.rundir import RESOLVERS

    for name, resolver in {"fl_multirun_group": multirun_group, **RESOLVERS}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
