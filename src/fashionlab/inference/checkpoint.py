"""Load a training checkpoint (weights_only=True) back into a MultiTaskClassifier with its config.

The stored config is checked against fashionlab.config_safety's allow-list before anything is
built, and the model is rebuilt from the project's own code through the same function as a training
run (models.build.build_module); its optimizer and schedule are only built if it is ever fitted."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from fashionlab.config_safety import (
    EMBEDDING,
    OPTIMIZERS,
    SCHEDULERS,
    SCHEDULES,
    check_targets,
    require_local_path,
    safe_instantiate,
)
from fashionlab.data.datamodule import stored_identity
from fashionlab.errors import CheckpointError
from fashionlab.fileio import file_digest
from fashionlab.models.build import build_module
from fashionlab.models.module import MultiTaskClassifier
from fashionlab.preflight import checkpoint_file
from fashionlab.tasks import TaskSpec, tasks_from_config


@dataclass
class LoadedCheckpoint:
    """A checkpoint rebuilt for inference: the module in eval mode, its training config and tasks,
    and the identity of its training data (fingerprint, val/test items; None in old checkpoints)."""

    module: MultiTaskClassifier
    cfg: DictConfig
    tasks: list[TaskSpec]
    path: Path
    sha256: str
    data_identity: dict | None = None

    @property
    def run_dir(self) -> Path:
        """The training run folder (checkpoints live in <run_dir>/checkpoints/)."""
        return self.path.parent.parent if self.path.parent.name == "checkpoints" else self.path.parent


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """torch.load(weights_only=True) of a local file (URLs are refused) with errors that name it."""
    path = checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: no 'state_dict' in the file; not a Lightning checkpoint")
    hparams = checkpoint.get("hyper_parameters") or {}
    for key in ("config", "tasks"):
        if not hparams.get(key):
            raise CheckpointError(f"{path}: hyper_parameters.{key} is missing; not a checkpoint "
                                  f"written by fashionlab's train.py")
    return checkpoint


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the trained MultiTaskClassifier (eval mode) with its training config and tasks."""
    path = require_local_path(path).expanduser().resolve()
    checkpoint = read_checkpoint(path, map_location)
    hparams = checkpoint["hyper_parameters"]
    cfg = OmegaConf.create(check_targets(hparams["config"], str(path), key="hyper_parameters.config"))
    tasks = tasks_from_config(hparams["tasks"], key=f"{path.name}: hyper_parameters.tasks")
    allowed = (OPTIMIZERS, SCHEDULES, SCHEDULERS, *EMBEDDING)
    module = build_module(cfg, tasks, pretrained=False,
                          build=partial(safe_instantiate, where=str(path), allowed=allowed))
    missing, unexpected = module.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the architecture in its config "
            f"(missing: {', '.join(missing[:5]) or '-'}; unexpected: {', '.join(unexpected[:5]) or '-'})")
    module.to(map_location).eval()
    return LoadedCheckpoint(module=module, cfg=cfg, tasks=tasks, path=path,
                            sha256=file_digest(path), data_identity=stored_identity(checkpoint))
