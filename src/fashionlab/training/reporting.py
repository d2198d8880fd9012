"""What a run leaves behind: metrics.json, per-task tables in the run directory, W&B plots."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from fashionlab.provenance import environment_info
from fashionlab.tasks import TaskSpec
from fashionlab.wandb_utils import finish_wandb, wandb_confusion_chart  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


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


def to_float(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def flat_metrics(results: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Merge Lightning's validate/test result dicts into one flat {name: float}."""
    merged: dict[str, float] = {}
    for result in results:
        for key, value in result.items():
            merged[key] = to_float(value)
    return merged


def task_tables(
    task: TaskSpec, details: Mapping[str, torch.Tensor]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(per-class F1 table, confusion matrix table with true classes as rows; None when the task
    has too many classes to keep one, see metrics.MAX_CONFUSION_CLASSES)."""
    f1 = pd.DataFrame({"class": list(task.classes),
                       "f1": details["per_class_f1"].cpu().numpy().astype(float)})
    if details.get("support") is not None:  # F1 is empty (NaN) for a class with no item
        f1["support"] = details["support"].cpu().numpy().astype(int)
    if details["confusion"] is None:
        return f1, None
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
        if confusion is not None:
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
        if confusion is None:
            continue
        if task.kind == "multiclass":
            payload[f"{stage}/{task.name}/confusion_matrix"] = wandb_confusion_chart(
                list(task.classes), confusion.to_numpy(), f"{stage} {task.name} confusion matrix")
        else:
            payload[f"{stage}/{task.name}/confusion"] = wandb.Table(
                dataframe=confusion.reset_index())
    if payload:
        experiment.log(payload)


def summarise(metrics: Mapping[str, float], keys: Iterable[str]) -> str:
    """One line with the given metrics, for the console."""
    return ", ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics and
                     isinstance(metrics[k], float) and not np.isnan(metrics[k]))
