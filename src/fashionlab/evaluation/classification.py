"""Test-split classification metrics per task, from predicted probabilities (training's torchmetrics)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics import F1Score, MetricCollection, Precision, Recall, StatScores

from fashionlab.models.metrics import TaskMetrics
from fashionlab.tasks import IGNORE_INDEX, TaskSpec


def per_class_table(task: TaskSpec, probs: torch.Tensor, targets: torch.Tensor) -> pd.DataFrame:
    """Precision, recall, F1 (torchmetrics, average="none") and support per class (multilabel: per
    label, predicted when p > 0.5); targets IGNORE_INDEX are left out. A value over no item is
    missing (NaN), not 0: recall and F1 of a class with no test item, precision of a class never
    predicted."""
    kw = {"task": task.kind, "num_classes": task.num_classes, "num_labels": task.num_classes,
          "average": "none", "ignore_index": IGNORE_INDEX}
    metrics = MetricCollection({"precision": Precision(**kw), "recall": Recall(**kw),
                                "f1": F1Score(**kw), "stats": StatScores(**kw)})
    metrics.update(probs, targets.long() if task.kind == "multiclass" else targets.int())
    values = metrics.compute()
    stats = values["stats"].long().numpy()
    support, predicted = stats[:, 4], stats[:, 0] + stats[:, 1]
    defined = {"precision": predicted > 0, "recall": support > 0, "f1": support > 0}
    return pd.DataFrame({"class": list(task.classes),
                         **{k: np.where(defined[k], values[k].double().numpy(), np.nan)
                            for k in ("precision", "recall", "f1")},
                         "support": support})


def classification_report(tasks: list[TaskSpec], probs: dict[str, np.ndarray],
                          targets: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per task: acc, f1_macro, f1_weighted (torchmetrics, as in training), the per-class table
    and the confusion matrix (rows = true class; None above MAX_CONFUSION_CLASSES classes)."""
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        task_probs, task_targets = torch.as_tensor(probs[task.name]), torch.as_tensor(targets[task.name])
        metrics = TaskMetrics(task)
        metrics.update_probs(task_probs, task_targets)
        scalars = {k: float(v) for k, v in metrics.compute().items()}
        confusion = metrics.details()["confusion"]  # None: too many classes to keep one
        confusion = None if confusion is None else confusion.cpu().numpy()
        out[task.name] = {**scalars, "per_class": per_class_table(task, task_probs, task_targets),
                          "confusion": confusion, "num_items": len(targets[task.name])}
    return out
