"""Split step: the official partition (missing val/test carved from train), or a seeded split
stratified by one multiclass task."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from fashionlab.data.datamodule import SPLITS
from fashionlab.data.splits import stratified_split
from fashionlab.data.table.frame import SPLIT, ImageTable
from fashionlab.data.tables import is_missing
from fashionlab.errors import ConfigError, DataFormatError
from fashionlab.tasks import TaskSpec

log = logging.getLogger(__name__)


def size_of(value: int | float, n: int, key: str) -> int:
    """A split size given as a count or a fraction of `n`."""
    if isinstance(value, float) and 0 <= value < 1:
        return round(value * n)
    if isinstance(value, int | float) and value >= 0 and float(value).is_integer():
        return int(value)
    raise ConfigError(f"{key}={value!r}: expected a count (int >= 0) or a fraction in [0, 1)")


def holdout(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held) positions; a stratified split, or nothing held out when size is 0."""
    if size <= 0:
        return np.arange(len(labels)), np.array([], dtype=np.int64)
    if size >= len(labels):
        raise ConfigError(f"a holdout of {size} leaves no training images out of {len(labels)}")
    return stratified_split(labels, size, seed)


def split_labels(tasks: list[TaskSpec], targets: dict[str, np.ndarray], split_by: str | None
                 ) -> np.ndarray:
    """The labels a split is stratified by: `split_by` (else the first multiclass task)."""
    by_name = {t.name: t for t in tasks}
    name = split_by
    if name is None:
        name = next((t.name for t in tasks if t.kind == "multiclass"), None)
    if name is None:
        return np.zeros(len(next(iter(targets.values()))), dtype=np.int64)
    if name not in by_name or by_name[name].kind != "multiclass":
        raise ConfigError(f"data.split_by={name!r} must name a multiclass task; tasks: "
                          f"{', '.join(by_name)}")
    return targets[name]


def check_classes_in_splits(tasks: list[TaskSpec], targets: dict[str, np.ndarray],
                            split_of: np.ndarray, split_by: str | None,
                            where: Callable[[str], str] = lambda cls: f"class {cls!r}",
                            strict: bool = True) -> None:
    """Check that each class of the task the split is stratified by can be in every non-empty
    split (train / val / test): one with fewer images than splits, or none in train, is a
    DataFormatError naming each such class (`where(cls)`, e.g. its folder) with its count per
    split and the way to drop such classes and list them (a warning unless `strict`); one that
    the split sizes left out of val or test is a warning (its metrics there are missing, not 0)."""
    name = split_by or next((t.name for t in tasks if t.kind == "multiclass"), None)
    task = next((t for t in tasks if t.name == name and t.kind == "multiclass"), None)
    if task is None:
        return
    splits = [s for s in SPLITS if (split_of == s).any()]
    labels = targets[task.name]
    counts = {s: np.bincount(labels[(split_of == s) & (labels >= 0)], minlength=task.num_classes)
              for s in splits}

    def described(i: int) -> str:
        total = sum(int(counts[s][i]) for s in splits)
        return (f"{where(task.classes[i])}: {total} image(s) "
                f"({', '.join(f'{s} {int(counts[s][i])}' for s in splits)})")

    missing = [i for i in range(task.num_classes) if any(counts[s][i] == 0 for s in splits)]
    impossible = [i for i in missing if counts.get("train", [1] * task.num_classes)[i] == 0
                  or sum(int(counts[s][i]) for s in splits) < len(splits)]
    if impossible and strict:
        raise DataFormatError(
            f"task {task.name!r}: {len(impossible)} class(es) cannot be in every split "
            f"({', '.join(splits)}): {'; '.join(described(i) for i in impossible)}. Add images, or "
            f"leave classes under N images out and list them in balance.csv with "
            f"data.balance.min_count=N (data.balance.rare=drop)")
    if missing:
        log.warning("task %r: %d class(es) missing from a split (its metrics there are missing, not "
                    "0; larger data.val_size / data.test_size make room): %s", task.name,
                    len(missing), "; ".join(described(i) for i in missing))


def assign_splits(table: ImageTable, tasks: list[TaskSpec], targets: dict[str, np.ndarray],
                  split_by: str | None, val_size: int | float, test_size: int | float, seed: int,
                  extra_splits: tuple[str, ...] = ()) -> np.ndarray:
    """Each row's split name ("train" / "val" / "test", or one of the reader's `extra_splits`)."""
    frame = table.frame
    n = len(frame)
    has_official = SPLIT in frame.columns and frame[SPLIT].map(lambda v: not is_missing(v)).any()
    if not has_official:
        labels = split_labels(tasks, targets, split_by)
        split_of = np.full(n, "train", dtype=object)
        n_test = size_of(test_size, n, "data.test_size")
        n_val = size_of(val_size, n, "data.val_size")
        rest, test = holdout(labels, n_test, seed)
        split_of[test] = "test"
        _, val = holdout(labels[rest], n_val, seed + 1)
        split_of[rest[val]] = "val"
        return split_of
    split_of = np.empty(n, dtype=object)
    for i, v in enumerate(frame[SPLIT]):
        if is_missing(v) or str(v).strip() not in (*SPLITS, *extra_splits):
            raise DataFormatError(f"{table.source(i)}: split is {v!r}; expected one of "
                                  f"{', '.join((*SPLITS, *extra_splits))} (the data has an official "
                                  f"partition)")
        split_of[i] = str(v).strip()
    if not (split_of == "train").any():
        raise DataFormatError(f"{table.name}: the official partition has no train images")
    for split, size, key, offset in (("test", test_size, "data.test_size", 0),
                                     ("val", val_size, "data.val_size", 1)):
        if (split_of == split).any():
            continue
        train = np.flatnonzero(split_of == "train")
        count = size_of(size, len(train), key)
        _, held = holdout(split_labels(tasks, targets, split_by)[train], count, seed + offset)
        split_of[train[held]] = split
        log.info("no official %s split: %d images carved from train (%s)", split, len(held), key)
    return split_of
