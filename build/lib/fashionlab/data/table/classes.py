"""Classes step: the tasks' class lists (`auto` = found in the data), inferred parents, and the
labels encoded as target arrays."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fashionlab.data.table.frame import AUTO, SOURCE, ImageTable
from fashionlab.errors import ConfigError, DataFormatError
from fashionlab.tasks import IGNORE_INDEX, TaskSpec, tasks_from_config

log = logging.getLogger(__name__)


def found_classes(table: ImageTable, task: str) -> set[str]:
    """The class names a task's labels use."""
    values = table.frame[task]
    if table.kind(task) == "multiclass":
        return {v for v in values if v is not None}
    return {c for v in values if v is not None for c in v}


def class_list(table: ImageTable, task: str) -> list[str]:
    """The task's classes: the configured list, else the reader's order, else sorted names."""
    classes = table.tasks_cfg[task]["classes"]
    if classes != AUTO:
        return [str(c) for c in classes]
    found = found_classes(table, task)
    order = [c for c in table.class_order.get(task, []) if c in found]
    return order + sorted(found - set(order)) if order else sorted(found)


def resolve_classes(table: ImageTable) -> list[TaskSpec]:
    """TaskSpecs with `classes: auto` and `parent_of: auto` resolved from the data; a task with
    no labels at all is left out (with a warning)."""
    resolved: dict[str, dict[str, Any]] = {}
    for task_name, entry in table.tasks_cfg.items():
        entry = dict(entry)
        if entry["classes"] == AUTO:
            if not found_classes(table, task_name):
                log.warning("task %r has no labels in this data and is left out", task_name)
                continue
            entry["classes"] = sorted(found_classes(table, task_name))
        resolved[task_name] = entry
    for task_name, entry in resolved.items():
        parent = entry.get("parent")
        if parent and parent not in resolved:
            raise ConfigError(f"data.tasks.{task_name}.parent names {parent!r}, which has no "
                              f"labels in this data")
        if parent and entry.get("parent_of") == AUTO:
            entry["parent_of"] = infer_parent_of(table, task_name, parent)
    return tasks_from_config(resolved)


def infer_parent_of(table: ImageTable, child: str, parent: str) -> dict[str, str]:
    """Each child class's parent, from the rows where both are labelled (one parent each)."""
    mapping: dict[str, str] = {}
    where: dict[str, str] = {}
    frame = table.frame
    for c, p, src in zip(frame[child], frame[parent], frame[SOURCE], strict=True):
        if c is None or p is None:
            continue
        if mapping.setdefault(c, p) != p:
            raise DataFormatError(
                f"{src}: class {c!r} of task {child!r} has parent {p!r}, but {where[c]} gives "
                f"it parent {mapping[c]!r}; a child class needs one parent")
        where.setdefault(c, src)
    return mapping


def encode(table: ImageTable, tasks: list[TaskSpec]) -> dict[str, np.ndarray]:
    """Multiclass: class indices (IGNORE_INDEX = unknown); multilabel: multi-hot float rows
    (all IGNORE_INDEX = unknown)."""
    targets: dict[str, np.ndarray] = {}
    for task in tasks:
        index = {c: i for i, c in enumerate(task.classes)}
        values = table.labels(task.name)
        if task.kind == "multiclass":
            targets[task.name] = np.array(
                [IGNORE_INDEX if v is None else index[v] for v in values], dtype=np.int64)
        else:
            hot = np.zeros((len(values), task.num_classes), dtype=np.float32)
            for i, v in enumerate(values):
                if v is None:
                    hot[i] = IGNORE_INDEX
                else:
                    hot[i, [index[c] for c in v]] = 1.0
            targets[task.name] = hot
    return targets
