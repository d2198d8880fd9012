"""What a run leaves behind: metrics.json, per-task tables in the run directory, W&B plots."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from fashionlab.tasks import TaskSpec

log = logging.getLogger(__name__)


def git_info(repo_dir: str | Path) -> dict[str, Any]:
    """Commit hash and whether the work tree has uncommitted changes (None outside git)."""
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


class TrainingStats(Callback):
    """Parameter count, training throughput and environment for metrics.json: throughput is the images
    of the training batches this fit saw (all processes) per second of `trainer.fit` (validation
    epochs included)."""

    def __init__(self) -> None:
        self.images = 0
        self.started: float | None = None
        self.fit_s: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        images = batch["image"] if isinstance(batch, Mapping) else batch[0]
        self.images += int(images.shape[0]) * trainer.world_size

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.started is not None:
            self.fit_s = time.perf_counter() - self.started

    def as_dict(self, model: torch.nn.Module) -> dict[str, Any]:
        rate = self.images / self.fit_s if self.fit_s and self.images else None
        return {"num_parameters": int(sum(p.numel() for p in model.parameters())),
                "train_images_seen": self.images, "fit_s": round(self.fit_s or 0.0, 2),
                "train_images_per_s": round(rate, 1) if rate is not None else None,
                **{f"env_{k}": v for k, v in environment_info().items()}}


def environment_info() -> dict[str, Any]:
    """The machine and library versions a run used: CPU model and cores, RAM, GPUs, torch/timm/lightning."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    versions = {}
    for package in ("torch", "timm", "lightning"):
        try:
            versions[f"{package}_version"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[f"{package}_version"] = None
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "ram_gb": ram_gb, "gpu": ", ".join(gpus) or None,
            "gpu_count": len(gpus), "python_version": platform.python_version(),
            "platform": platform.platform(), **versions}


def to_float(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def flat_metrics(results: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Merge Lightning's validate/test result dicts into one flat {name: float}."""
    merged: dict[str, float] = {}
    for result in results:
        for key, value in result.items():
            merged[key] = to_float(value)
    return merged


def write_metrics_json(path: Path, metrics: Mapping[str, Any]) -> None:
    """Write a flat JSON object; non-finite floats become null so the file stays valid JSON."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def task_tables(
    task: TaskSpec, details: Mapping[str, torch.Tensor]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-class F1 table, confusion matrix table with true classes as rows)."""
    f1 = pd.DataFrame({"class": list(task.classes),
                       "f1": details["per_class_f1"].cpu().numpy().astype(float)})
    matrix = details["confusion"].cpu().numpy()
    if task.kind == "multiclass":
        confusion = pd.DataFrame(matrix, index=list(task.classes), columns=list(task.classes))
    else:
        confusion = pd.DataFrame(matrix.reshape(len(task.classes), 4), index=list(task.classes),
                                 columns=["tn", "fp", "fn", "tp"])
    confusion.index.name = "true"
    return f1, confusion


def write_task_tables(run_dir: Path, stage: str, tasks: list[TaskSpec],
                      results: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """`{stage}_{task}_confusion.csv` and `{stage}_{task}_per_class_f1.csv` under run_dir/tables."""
    out = run_dir / "tables"
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        if task.name not in results:
            continue
        f1, confusion = task_tables(task, results[task.name])
        f1.to_csv(out / f"{stage}_{task.name}_per_class_f1.csv", index=False)
        confusion.to_csv(out / f"{stage}_{task.name}_confusion.csv")


def log_wandb_tables(experiment: Any, stage: str, tasks: list[TaskSpec],
                     results: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Log per-task confusion matrices (W&B's confusion-matrix chart) and per-class F1 tables."""
    import wandb

    payload: dict[str, Any] = {}
    for task in tasks:
        if task.name not in results:
            continue
        f1, confusion = task_tables(task, results[task.name])
        payload[f"{stage}/{task.name}/per_class_f1"] = wandb.Table(dataframe=f1)
        if task.kind == "multiclass":
            rows = [[t, p, int(confusion.loc[t, p])]
                    for t in confusion.index for p in confusion.columns]
            table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
            payload[f"{stage}/{task.name}/confusion_matrix"] = wandb.plot_table(
                "wandb/confusion_matrix/v1", table,
                {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                {"title": f"{stage} {task.name} confusion matrix"},
            )
        else:
            payload[f"{stage}/{task.name}/confusion"] = wandb.Table(
                dataframe=confusion.reset_index())
    if payload:
        experiment.log(payload)


def summarise(metrics: Mapping[str, float], keys: Iterable[str]) -> str:
    """One line with the given metrics, for the console."""
    return ", ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics and
                     isinstance(metrics[k], float) and not np.isnan(metrics[k]))
