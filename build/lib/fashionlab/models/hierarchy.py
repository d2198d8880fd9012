"""Hierarchical predictions: a child task's class is chosen among the children of its parent's
predicted class (e.g. `item` within the predicted `primary`), and full labels such as
"shoes-female-sandals"."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fashionlab.tasks import TaskSpec


def depth(task: TaskSpec, by_name: Mapping[str, TaskSpec]) -> int:
    """0 for a task without parent, 1 for its children, and so on."""
    d, seen = 0, {task.name}
    while task.parent:
        task = by_name[task.parent]
        if task.name in seen:
            raise ValueError(f"task hierarchy has a cycle through {task.name!r}")
        seen.add(task.name)
        d += 1
    return d


def hierarchy_order(tasks: list[TaskSpec]) -> list[TaskSpec]:
    """Tasks with parents before children (stable within one depth)."""
    by_name = {t.name: t for t in tasks}
    return sorted(tasks, key=lambda t: depth(t, by_name))


def allowed_children(child: TaskSpec, parent: TaskSpec) -> torch.Tensor:
    """Bool (parent classes, child classes): True where the child class belongs to the parent class."""
    mask = torch.zeros(parent.num_classes, child.num_classes, dtype=torch.bool)
    for c, name in enumerate(child.classes):
        mask[parent.class_index(child.parent_of[name]), c] = True
    return mask


def constrained_predictions(
    tasks: list[TaskSpec], logits: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Predicted class index per task: argmax, except that a child task (one with a `parent`)
    picks the best class among the children of the parent's (constrained) prediction. Multilabel
    tasks give a multi-hot (logit > 0). A parent class without children leaves its child task
    unconstrained."""
    by_name = {t.name: t for t in tasks}
    preds: dict[str, torch.Tensor] = {}
    for task in hierarchy_order([t for t in tasks if t.name in logits]):
        scores = logits[task.name]
        if task.kind == "multilabel":
            preds[task.name] = (scores > 0).long()
            continue
        if task.parent and task.parent in preds:
            mask = allowed_children(task, by_name[task.parent]).to(scores.device)
            allowed = mask[preds[task.parent]]
            allowed[~allowed.any(dim=1)] = True
            scores = scores.masked_fill(~allowed, float("-inf"))
        preds[task.name] = scores.argmax(dim=1)
    return {t.name: preds[t.name] for t in tasks if t.name in preds}


def full_label(tasks: list[TaskSpec], names: Mapping[str, str | None], sep: str = "-") -> str:
    """The class names of the multiclass tasks, coarsest first, joined: "shoes-female-sandals".

    Tasks missing from `names` or named None are left out; a child name qualified by its parent
    ("bags/other") is written without the repeated parent ("bags-other")."""
    parts = []
    for task in hierarchy_order([t for t in tasks if t.kind == "multiclass"]):
        name = names.get(task.name)
        if name is None:
            continue
        parent_name = names.get(task.parent) if task.parent else None
        if parent_name and name.startswith(f"{parent_name}/"):
            name = name[len(parent_name) + 1:]
        parts.append(str(name))
    return sep.join(parts)
