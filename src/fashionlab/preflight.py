"""Checks of the paths a run needs, right after composition and before torch, timm or a model is
loaded, so that a missing folder or checkpoint is reported in seconds (train.py, evaluate.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fashionlab.config_safety import require_local_path
from fashionlab.errors import CheckpointError, DataNotFoundError


def checkpoint_file(path: str | Path, key: str = "checkpoint") -> Path:
    """`path` as an existing local file; CheckpointError naming it (and the checkpoints next to
    it) otherwise."""
    path = require_local_path(path, key)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.ckpt"))
            hint = f" ({path.parent} holds: {', '.join(found) or 'no .ckpt files'})"
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    return path


def _data_root(cfg: DictConfig) -> str | None:
    """data.root of a data config that reads a folder and cannot fetch it (no data.download)."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "root" not in data or "download" in data:
        return None
    root = OmegaConf.select(cfg, "data.root", default=None, throw_on_resolution_failure=False)
    return str(root) if root else None


def check_train_paths(cfg: DictConfig) -> None:
    """A resume checkpoint (ckpt_path, other than Lightning's `last` / `hpc`) and data.root must
    exist."""
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and str(ckpt) not in ("last", "hpc"):
        checkpoint_file(ckpt, "ckpt_path")
    root = _data_root(cfg)
    if root is not None and not Path(root).expanduser().is_dir():
        raise DataNotFoundError(f"data.root={root}: folder not found")


def check_eval_paths(cfg: DictConfig) -> None:
    """The checkpoint to evaluate and an overriding data.root must exist."""
    checkpoint_file(cfg.ckpt_path, "ckpt_path")
    root = OmegaConf.select(cfg, "data.root", default=None)
    if root and not Path(str(root)).expanduser().is_dir():
        raise DataNotFoundError(f"data.root={root}: folder not found")
