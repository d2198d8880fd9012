"""Test-split classification metrics per task, from predicted probabilities (training's torchmetrics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from fashionlab.models.metrics import TaskMetrics
from fashionlab.tasks import TaskSpec


def per_class_table(task: TaskSpec, confusion: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from a confusion matrix (multilabel: (L, 2, 2))."""
    if task.kind == "multiclass":
        tp = np.diag(confusion).astype(float)
        fp = confusion.sum(axis=0) - tp
        fn = confusion.sum(axis=1) - tp
    else:
        tp, fp, fn = (confusion[:, 1, 1].astype(float), confusion[:, 0, 1].astype(float),
                      confusion[:, 1, 0].astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return pd.DataFrame({"class": list(task.classes), "precision": precision, "recall": recall,
                         "f1": f1, "support": (tp + fn).astype(int)})


def classification_report(tasks: list[TaskSpec], probs: dict[str, np.ndarray],
                          targets: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per task: acc, f1_macro, f1_weighted (torchmetrics, as in training), the per-class table
    and the confusion matrix (rows = true class)."""
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        metrics = TaskMetrics(task)
        metrics.update_probs(torch.as_tensor(probs[task.name]), torch.as_tensor(targets[task.name]))
        scalars = {k: float(v) for k, v in metrics.compute().items()}
        confusion = metrics.details()["confusion"].cpu().numpy()
        out[task.name] = {**scalars, "per_class": per_class_table(task, confusion),
                          "confusion": confusion, "num_items": len(targets[task.name])}
    return out
