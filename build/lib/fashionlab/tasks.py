"""Task definitions: what each head predicts, declared by a data config's `tasks:` block."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fashionlab.errors import ConfigError

TaskKind = Literal["multiclass", "multilabel"]
TASK_KINDS: tuple[str, ...] = ("multiclass", "multilabel")
IGNORE_INDEX = -1


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task: its classes, its kind and, optionally, the coarser task it refines."""

    name: str
    kind: TaskKind
    classes: tuple[str, ...]
    parent: str | None = None
    parent_of: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, class_name: str) -> int:
        """Index of `class_name`; a clear error when the name is not one of this task's classes."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise ConfigError(
                f"unknown class {class_name!r} for task {self.name!r}; "
                f"known classes: {', '.join(self.classes)}"
            ) from None


def tasks_from_config(tasks_cfg: Mapping[str, Any], key: str = "data.tasks") -> list[TaskSpec]:
    """Validate a `tasks:` mapping and turn it into TaskSpecs, naming the offending key on error."""
    if not tasks_cfg:
        raise ConfigError(f"{key} is empty: a data config must declare at least one task")
    specs: list[TaskSpec] = []
    for name, entry in tasks_cfg.items():
        where = f"{key}.{name}"
        if entry is None or "kind" not in entry or "classes" not in entry:
            raise ConfigError(f"{where} needs 'kind' and 'classes'")
        kind = entry["kind"]
        if kind not in TASK_KINDS:
            raise ConfigError(f"{where}.kind is {kind!r}; expected one of {', '.join(TASK_KINDS)}")
        classes = tuple(str(c) for c in entry["classes"])
        if len(classes) < 2 and kind == "multiclass":
            raise ConfigError(f"{where}.classes must list at least two classes")
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ConfigError(f"{where}.classes repeats {', '.join(duplicates)}")
        parent_of = {str(k): str(v) for k, v in (entry.get("parent_of") or {}).items()}
        specs.append(
            TaskSpec(
                name=str(name),
                kind=kind,
                classes=classes,
                parent=entry.get("parent"),
                parent_of=parent_of,
            )
        )
    by_name = {t.name: t for t in specs}
    for task in specs:
        if task.parent is None:
            continue
        where = f"{key}.{task.name}"
        parent = by_name.get(task.parent)
        if parent is None:
            raise ConfigError(f"{where}.parent names unknown task {task.parent!r}")
        missing = [c for c in task.classes if c not in task.parent_of]
        if missing:
            raise ConfigError(f"{where}.parent_of has no parent for: {', '.join(missing)}")
        for child, parent_class in task.parent_of.items():
            if child not in task.classes:
                raise ConfigError(f"{where}.parent_of names unknown class {child!r}")
            if parent_class not in parent.classes:
                raise ConfigError(
                    f"{where}.parent_of[{child!r}] is {parent_class!r}, "
                    f"which is not a class of task {parent.name!r}"
                )
    return specs


def task_by_name(tasks: list[TaskSpec], name: str, what: str = "task",
                 owner: str = "the model's") -> TaskSpec:
    """The task called `name`; a clear error listing the known tasks otherwise."""
    for task in tasks:
        if task.name == name:
            return task
    raise ConfigError(f"unknown {what} {name!r}; {owner} tasks are: {', '.join(t.name for t in tasks)}")


def tasks_to_config(tasks: list[TaskSpec]) -> dict[str, dict[str, Any]]:
    """The inverse of `tasks_from_config`: plain containers (kept in checkpoints, since a data
    config may resolve its classes from the data itself)."""
    out: dict[str, dict[str, Any]] = {}
    for task in tasks:
        entry: dict[str, Any] = {"kind": task.kind, "classes": list(task.classes)}
        if task.parent:
            entry["parent"] = task.parent
            entry["parent_of"] = dict(task.parent_of)
        out[task.name] = entry
    return out


def parent_labels(child: TaskSpec, parent: TaskSpec, child_labels: np.ndarray) -> np.ndarray:
    """Map integer labels of `child` to the integer labels of its parent task."""
    lookup = np.array(
        [parent.class_index(child.parent_of[c]) for c in child.classes], dtype=np.int64
    )
    labels = np.asarray(child_labels, dtype=np.int64)
    out = np.full(labels.shape, IGNORE_INDEX, dtype=np.int64)
    known = labels != IGNORE_INDEX
    out[known] = lookup[labels[known]]
    return out


def derive_parent_targets(
    tasks: list[TaskSpec], targets: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Fill in labels of parent tasks that the data does not store, from their children's labels."""
    by_name = {t.name: t for t in tasks}
    out = dict(targets)
    for task in tasks:
        if task.parent and task.name in out and task.parent not in out:
            out[task.parent] = parent_labels(task, by_name[task.parent], out[task.name])
    missing = [t.name for t in tasks if t.name not in out]
    if missing:
        raise ConfigError(f"no labels for task(s) {', '.join(missing)} in this dataset")
    return out
