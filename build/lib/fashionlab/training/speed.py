"""GPU speed settings of a training run: TF32 matmuls on CUDA and `torch.compile` of the backbone.

Both leave the checkpoint unchanged: `nn.Module.compile` compiles the backbone's forward in place,
so parameter names (and therefore resuming, evaluation and prediction from the checkpoint) are
those of the eager model, without torch.compile's `_orig_mod.` prefix."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from fashionlab.errors import ConfigError
from fashionlab.models.module import MultiTaskClassifier

log = logging.getLogger(__name__)

MATMUL_PRECISIONS = ("highest", "high", "medium")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def on_cuda(cfg: DictConfig) -> bool:
    """Whether the trainer will run on a CUDA device (accelerator gpu/cuda, or auto with one)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return torch.cuda.is_available() and accelerator in ("gpu", "cuda", "auto")


def check_speed_settings(cfg: DictConfig) -> None:
    """Raise ConfigError for a training.matmul_precision or training.compile value torch lacks."""
    training = cfg.get("training") or {}
    precision = training.get("matmul_precision")
    if precision is not None and precision not in MATMUL_PRECISIONS:
        raise ConfigError(f"training.matmul_precision={precision!r}: expected null or one of "
                          f"{', '.join(MATMUL_PRECISIONS)}")
    compile_ = training.get("compile", False)
    if not isinstance(compile_, bool) and compile_ not in COMPILE_MODES:
        raise ConfigError(f"training.compile={compile_!r}: expected true, false or a torch.compile mode "
                          f"({', '.join(COMPILE_MODES)})")


def apply_matmul_precision(cfg: DictConfig) -> str | None:
    """torch.set_float32_matmul_precision(training.matmul_precision) when training on CUDA
    ('high': TF32 tensor cores for float32 matmuls; cuDNN convolutions use TF32 by default).
    CPU runs keep full float32 (and their bit-for-bit repeatability). Returns what was set."""
    precision = (cfg.get("training") or {}).get("matmul_precision")
    if precision is None or not on_cuda(cfg):
        return None
    torch.set_float32_matmul_precision(precision)
    return str(precision)


def compile_backbone(model: MultiTaskClassifier, setting: bool | str, backend: str = "inductor") -> bool:
    """Compile the backbone's forward in place (`training.compile`: true, or a torch.compile mode;
    `training.compile_backend`: inductor, or e.g. aot_eager to debug); the heads, losses and metrics
    stay eager. Returns whether it compiled."""
    if setting is False or setting is None:
        return False
    mode = None if setting is True or setting == "default" else str(setting)
    model.net.backbone.compile(mode=mode, backend=backend)
    log.info("backbone compiled (torch.compile, backend=%s, mode=%s)", backend, mode or "default")
    return True
