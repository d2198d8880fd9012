"""Multi-task loss: cross-entropy for multiclass tasks (hard or soft targets), BCE-with-logits for
multilabel ones."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.tasks import IGNORE_INDEX, TaskSpec

CLASS_WEIGHTINGS = ("none", "balanced")


def balanced_class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights n / (k * count_c), as in sklearn's 'balanced'; 0 for empty classes."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.as_tensor(weights, dtype=torch.float32)


class MultiTaskLoss(nn.Module):
    """Weighted sum of per-task losses. Labels equal to IGNORE_INDEX (-1) do not count (multilabel:
    rows of -1 are items whose labels are unknown).

    A multiclass target may also be soft (float, batch x classes; e.g. from mixup/cutmix): then the
    loss is soft-target cross-entropy, the same label smoothing applied to the soft target (as timm's
    SoftTargetCrossEntropy on timm-smoothed targets), and rows of -1 do not count.
    """

    def __init__(
        self,
        tasks: list[TaskSpec],
        label_smoothing: float = 0.0,
        class_weights: str = "none",
        task_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if class_weights not in CLASS_WEIGHTINGS:
            raise ConfigError(
                f"model.loss.class_weights is {class_weights!r}; "
                f"expected one of {', '.join(CLASS_WEIGHTINGS)}"
            )
        names = {t.name for t in tasks}
        unknown = sorted(set(task_weights or {}) - names)
        if unknown:
            raise ConfigError(
                f"model.loss.task_weights names unknown task(s) {', '.join(unknown)}; "
                f"tasks are {', '.join(sorted(names))}"
            )
        self.tasks = tasks
        self.label_smoothing = float(label_smoothing)
        self.class_weighting = class_weights
        self.task_weights = {t.name: float((task_weights or {}).get(t.name, 1.0)) for t in tasks}
        for task in tasks:
            self.register_buffer(f"class_weight_{task.name}", None, persistent=False)

    def set_class_counts(self, counts: Mapping[str, np.ndarray], num_samples: int) -> None:
        """With 'balanced': CE class weights, or BCE pos_weight = negatives / positives per label,
        from the training split's counts."""
        if self.class_weighting != "balanced":
            return
        for task in self.tasks:
            if task.kind == "multiclass":
                weights = balanced_class_weights(counts[task.name])
            else:
                positives = np.maximum(np.asarray(counts[task.name], dtype=np.float64), 1.0)
                weights = torch.as_tensor((num_samples - positives) / positives,
                                          dtype=torch.float32)
            setattr(self, f"class_weight_{task.name}", weights)

    def forward(
        self, logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=next(iter(logits.values())).device)
        for task in self.tasks:
            out, target = logits[task.name], targets[task.name]
            weight = getattr(self, f"class_weight_{task.name}")
            if task.kind == "multiclass" and target.is_floating_point():
                known = target[:, 0] >= 0
                if not known.any():
                    continue
                loss = F.cross_entropy(out[known], target[known], weight=weight,
                                       label_smoothing=self.label_smoothing)
            elif task.kind == "multiclass":
                if (target == IGNORE_INDEX).all():
                    continue
                loss = F.cross_entropy(
                    out, target, weight=weight, ignore_index=IGNORE_INDEX,
                    label_smoothing=self.label_smoothing,
                )
            else:
                known = target >= 0
                if not known.any():
                    continue
                per_label = F.binary_cross_entropy_with_logits(
                    out, target.float().clamp(min=0), pos_weight=weight, reduction="none")
                loss = (per_label * known).sum() / known.sum()
            parts[task.name] = loss
            total = total + self.task_weights[task.name] * loss
        return total, parts
