"""Caps per class (`data.balance.max_per_class`): before the split on every image (`cap: all`,
as CelebA styles are balanced) or on the train split only (`cap: train`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fashionlab.data.table.balance import BalanceConfig
from fashionlab.data.table.classes import class_list
from fashionlab.data.table.frame import ImageTable
from fashionlab.errors import ConfigError
from fashionlab.tasks import TaskSpec


def cap_labels(labels: pd.DataFrame, max_per_class: int | str | None,
               unlabelled: int | float | None, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Row positions to keep so that no class (column of the boolean `labels`) has more than
    `max_per_class` positives.

    `max_per_class`: an int, "min" (the rarest class's count) or None (keep all). Classes are
    filled rarest first from a seeded shuffle, an image counting for every class it has; an image
    is taken only while none of its classes is full. `unlabelled`: images with no class kept, a
    count or a fraction of the kept labelled images (None: all of them).
    """
    matrix = labels.to_numpy(dtype=bool)
    before = dict(zip(labels.columns, matrix.sum(axis=0).tolist(), strict=True))
    labelled = np.flatnonzero(matrix.any(axis=1))
    rng = np.random.default_rng(seed)
    if max_per_class is None:
        keep = labelled
    else:
        cap = min(before.values()) if max_per_class == "min" else int(max_per_class)
        if cap < 1:
            raise ConfigError(f"data.balance.max_per_class must be positive, got {max_per_class!r}")
        counts = np.zeros(matrix.shape[1], dtype=np.int64)
        chosen: list[int] = []
        taken = np.zeros(len(matrix), dtype=bool)
        for col in np.argsort(matrix.sum(axis=0), kind="stable"):
            for row in rng.permutation(np.flatnonzero(matrix[:, col])):
                if counts[col] >= cap:
                    break
                if taken[row] or (counts[matrix[row]] >= cap).any():
                    continue
                taken[row] = True
                counts += matrix[row]
                chosen.append(int(row))
        keep = np.sort(np.array(chosen, dtype=np.int64))
    unlabelled_rows = np.flatnonzero(~matrix.any(axis=1))
    if unlabelled is None:
        n_unlabelled = len(unlabelled_rows)
        extra: Any = unlabelled_rows
    else:
        n_unlabelled = round(unlabelled * len(keep)) if isinstance(unlabelled, float) else int(unlabelled)
        n_unlabelled = min(max(n_unlabelled, 0), len(unlabelled_rows))
        extra = rng.choice(unlabelled_rows, size=n_unlabelled, replace=False) if n_unlabelled else []
    keep = np.sort(np.concatenate([keep, np.asarray(extra, dtype=np.int64)]))
    after = dict(zip(labels.columns, matrix[keep].sum(axis=0).tolist(), strict=True))
    report = {"positives_before": before, "positives_after": after,
              "images_before": len(matrix), "images_after": len(keep),
              "unlabelled_kept": int(n_unlabelled)}
    return keep, report


def cap_before_split(table: ImageTable, cfg: BalanceConfig, task: str | None, seed: int
                     ) -> tuple[ImageTable, dict[str, Any]]:
    """`cap: all`: the cap on every image, before the split (official partitions included)."""
    if cfg.cap != "all" or task is None or (cfg.max_per_class is None and cfg.unlabelled is None):
        return table, {}
    classes = class_list(table, task)
    labels = pd.DataFrame(table.class_matrix(task, classes), columns=classes)
    keep, report = cap_labels(labels, cfg.max_per_class, cfg.unlabelled, seed)
    return table.rows(keep), {"where": "all", **report}


def cap_train(split_of: np.ndarray, tasks: list[TaskSpec], targets: dict[str, np.ndarray],
              cfg: BalanceConfig, task: str | None, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """`cap: train`: at most `max_per_class` train images per class (seeded random subset; val
    and test untouched). Removed rows get split "". Returns the splits and {class: removed}."""
    if cfg.cap != "train" or task is None or cfg.max_per_class is None or task not in targets:
        return split_of, {}
    spec = next(t for t in tasks if t.name == task)
    split_of = split_of.copy()
    labels = targets[task]
    train = split_of == "train"
    if spec.kind == "multilabel":
        rows = np.flatnonzero(train)
        frame = pd.DataFrame(labels[rows] > 0, columns=list(spec.classes))
        keep, report = cap_labels(frame, cfg.max_per_class, None, seed + 2)
        split_of[np.setdiff1d(rows, rows[keep])] = ""
        removed = {c: int(report["positives_before"][c] - report["positives_after"][c])
                   for c in spec.classes}
        return split_of, {c: n for c, n in removed.items() if n}
    present = [int((train & (labels == c)).sum()) for c in range(spec.num_classes)]
    cap = min([n for n in present if n] or [0]) if cfg.max_per_class == "min" else cfg.max_per_class
    rng = np.random.default_rng(seed + 2)
    capped: dict[str, int] = {}
    for c, cls in enumerate(spec.classes):
        rows = np.flatnonzero(train & (labels == c))
        if len(rows) > int(cap):
            drop = rng.choice(rows, size=len(rows) - int(cap), replace=False)
            split_of[drop] = ""
            capped[cls] = len(drop)
    return split_of, capped
