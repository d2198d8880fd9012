"""Decoding model outputs into class indices and names, shared by the predictor and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fashionlab.models.hierarchy import constrained_predictions
from fashionlab.tasks import TaskSpec


def predicted_indices(tasks: list[TaskSpec], probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Argmax per multiclass task, a child task's class chosen among the children of its parent's
    predicted class (`models.hierarchy`); multi-hot (p >= 0.5) per multilabel task."""
    multiclass = [t for t in tasks if t.kind == "multiclass"]
    constrained = constrained_predictions(
        multiclass, {t.name: torch.from_numpy(np.asarray(probs[t.name])) for t in multiclass})
    return {t.name: (constrained[t.name].numpy() if t.kind == "multiclass"
                     else (probs[t.name] >= 0.5).astype(np.int64)) for t in tasks}


def label_names(task: TaskSpec, labels: np.ndarray) -> list[Any]:
    """Class names of integer labels (None for unknown) or lists of names of multi-hot rows."""
    if task.kind == "multiclass":
        return [task.classes[int(i)] if i >= 0 else None for i in labels]
    return [[task.classes[j] for j in np.flatnonzero(row)] for row in labels]
