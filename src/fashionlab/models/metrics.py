"""Per-task torchmetrics: accuracy, macro- and weighted-F1, per-class F1 and confusion matrix.

Logged names follow `{stage}/{task}/{metric}`, e.g. `val/article/acc`, `test/category/f1_macro`.
Metrics are always fed probabilities (softmax / sigmoid of the logits): torchmetrics guesses
whether multilabel scores are logits from their range, and a batch of logits that all fall
in [0, 1] would be thresholded at 0.5 as if it were probabilities.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassStatScores,
    MultilabelAccuracy,
    MultilabelConfusionMatrix,
    MultilabelF1Score,
    MultilabelStatScores,
)

from fashionlab.models.hierarchy import constrained_predictions
from fashionlab.tasks import IGNORE_INDEX, TaskSpec

SCALAR_METRICS = ("acc", "f1_macro", "f1_weighted")
#: Multiclass tasks with more classes keep no confusion matrix (e.g. 3,600 In-shop items: 13M cells
#: per stage on the device, a 13M-cell CSV, a W&B chart of 13M rows); per-class F1 is kept.
MAX_CONFUSION_CLASSES = 100


def to_probs(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities of one task's logits: softmax (multiclass) or sigmoid (multilabel)."""
    return logits.softmax(dim=1) if task.kind == "multiclass" else logits.sigmoid()


class TaskMetrics(nn.Module):
    """Metrics of one task at one stage; `compute()` returns scalars, `details()` the tables."""

    def __init__(self, task: TaskSpec) -> None:
        super().__init__()
        self.task = task
        n = task.num_classes
        if task.kind == "multiclass":
            kw = {"num_classes": n, "ignore_index": IGNORE_INDEX}
            self.scalars = MetricCollection({
                "acc": MulticlassAccuracy(average="micro", **kw),
                "f1_macro": MulticlassF1Score(average="macro", **kw),
                "f1_weighted": MulticlassF1Score(average="weighted", **kw),
            })
            self.per_class_f1 = MulticlassF1Score(average="none", **kw)
            self.stats = MulticlassStatScores(average="none", **kw)
            self.confusion = MulticlassConfusionMatrix(**kw) if n <= MAX_CONFUSION_CLASSES else None
        else:
            kw = {"num_labels": n, "ignore_index": IGNORE_INDEX}
            self.scalars = MetricCollection({
                "acc": MultilabelAccuracy(average="micro", **kw),
                "f1_macro": MultilabelF1Score(average="macro", **kw),
                "f1_weighted": MultilabelF1Score(average="weighted", **kw),
            })
            self.per_class_f1 = MultilabelF1Score(average="none", **kw)
            self.stats = MultilabelStatScores(average="none", **kw)
            self.confusion = MultilabelConfusionMatrix(**kw)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Update from the model's raw outputs."""
        self.update_probs(to_probs(self.task, logits.detach()), target)

    def update_probs(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        """Update from probabilities (multilabel: a label is predicted when p > 0.5)."""
        target = target.long() if self.task.kind == "multiclass" else target.int()
        self.scalars.update(probs, target)
        self.per_class_f1.update(probs, target)
        self.stats.update(probs, target)
        if self.confusion is not None:
            self.confusion.update(probs, target)

    def compute(self) -> dict[str, torch.Tensor]:
        return dict(self.scalars.compute())

    def details(self) -> dict[str, torch.Tensor]:
        """Per-class F1 (num_classes,; NaN for a class with no item: missing, not 0), the items per
        class (`support`) and the confusion matrix (multilabel: (L, 2, 2); None for a task with
        more than MAX_CONFUSION_CLASSES classes)."""
        support = self.stats.compute()[:, 4]
        f1 = self.per_class_f1.compute().float()
        return {"per_class_f1": torch.where(support > 0, f1, torch.full_like(f1, float("nan"))),
                "support": support,
                "confusion": None if self.confusion is None else self.confusion.compute()}

    def reset(self) -> None:
        self.scalars.reset()
        self.per_class_f1.reset()
        self.stats.reset()
        if self.confusion is not None:
            self.confusion.reset()


class StageMetrics(nn.Module):
    """TaskMetrics for every task of one stage (train, val or test), plus, for each multiclass
    task with a parent, `acc_constrained`: accuracy when its class is chosen only among the
    children of the predicted parent class (`models.hierarchy.constrained_predictions`)."""

    def __init__(self, tasks: list[TaskSpec]) -> None:
        super().__init__()
        self.tasks = tasks
        self.by_task = nn.ModuleDict({t.name: TaskMetrics(t) for t in tasks})
        self.constrained = nn.ModuleDict({
            t.name: MulticlassAccuracy(num_classes=t.num_classes, average="micro",
                                       ignore_index=IGNORE_INDEX)
            for t in tasks if t.parent and t.kind == "multiclass"
        })

    def update(self, logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> None:
        for name, metrics in self.by_task.items():
            metrics.update(logits[name], targets[name])
        if len(self.constrained):
            preds = constrained_predictions(self.tasks, {k: v.detach() for k, v in logits.items()})
            for name, metric in self.constrained.items():
                metric.update(preds[name], targets[name].long())

    def compute(self, stage: str) -> dict[str, torch.Tensor]:
        """Scalars named `{stage}/{task}/{metric}`."""
        scalars = {
            f"{stage}/{name}/{key}": value
            for name, metrics in self.by_task.items()
            for key, value in metrics.compute().items()
        }
        for name, metric in self.constrained.items():
            scalars[f"{stage}/{name}/acc_constrained"] = metric.compute()
        return scalars

    def details(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: metrics.details() for name, metrics in self.by_task.items()}

    def reset(self) -> None:
        for metrics in self.by_task.values():
            metrics.reset()
        for metric in self.constrained.values():
            metric.reset()
