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


def timm_data(name: str, key: str) -> object:
    """`${fl_timm_data:<backbone name>,<key>}`: interpolation, mean or std from timm's data config
    for the backbone (the defaults of `data.preprocess`, conf/data/*.yaml)."""
    from fashionlab.models.backbones import timm_data_value

    return timm_data_value(name, key)


def cv2_interpolation(name: str) -> int:
    """`${fl_cv2_interpolation:bicubic}`: the OpenCV flag albumentations' resizes take."""
    from fashionlab.data.preprocess import cv2_interpolation as flag

    return flag(name)


def mixed_precision() -> str:
    """`${fl_mixed_precision:}`: bf16-mixed where the CUDA device supports bfloat16 (Ampere and
    newer; also without CUDA, e.g. when a config is composed on CPU), else 16-mixed (float16 with
    loss scaling)."""
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "16-mixed"
    return "bf16-mixed"


def register() -> None:
    """Register every resolver the configs use (before Hydra composes them)."""
    from fashionlab.rundir import RESOLVERS

    for name, resolver in {"fl_multirun_group": multirun_group, "fl_timm_data": timm_data,
                           "fl_cv2_interpolation": cv2_interpolation, "fl_mixed_precision": mixed_precision,
                           **RESOLVERS}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
