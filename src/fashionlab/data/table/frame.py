"""The typed image table: a pandas DataFrame with named columns, plus what the steps learnt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionlab.data.tables import is_missing
from fashionlab.tasks import TaskSpec

# Columns a reader provides (`path` and one column per task required, the others optional).
PATH, SPLIT, ID, SOURCE = "path", "split", "id", "source"
# Optional: the region (x_1, y_1, x_2, y_2) of the image to read (a crop box), or None.
BOX = "box"
# Columns the steps add.
ABS_PATH, REL_PATH, FILE_KEY = "abs_path", "rel_path", "file_key"
#: What checkpoints written before content hashes fingerprinted a file by (size, quick hash).
LEGACY_FILE_KEY = "legacy_file_key"

AUTO = "auto"


def objects(values: list[Any], frame: pd.DataFrame) -> pd.Series:
    """A column of Python objects (None stays None: no NaN, no string dtype inference)."""
    return pd.Series(values, index=frame.index, dtype=object)


@dataclass(frozen=True)
class ImageTable:
    """One row per image file. Label columns hold a class name or None (multiclass), or a sorted
    list of names or None (multilabel); `derived` names task columns computed from another task."""

    frame: pd.DataFrame
    root: Path
    tasks_cfg: Mapping[str, Mapping[str, Any]]
    name: str = "data"
    derived: frozenset[str] = frozenset()
    #: Class order a reader knows (e.g. CelebA's styles in rule order), used where classes are auto.
    class_order: Mapping[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    def source(self, i: int) -> str:
        return str(self.frame.at[i, SOURCE])

    def labels(self, task: str) -> list[Any]:
        return self.frame[task].tolist()

    def kind(self, task: str) -> str:
        return str(self.tasks_cfg[task]["kind"])

    def has_official_split(self, complete: bool = False) -> bool:
        """Whether the reader gave a split (the data's own partition) for some row; `complete`:
        for each of train, val and test (none of them is carved from train)."""
        if SPLIT not in self.frame.columns:
            return False
        given = {str(v).strip() for v in self.frame[SPLIT] if not is_missing(v)}
        return {"train", "val", "test"} <= given if complete else bool(given)

    def with_frame(self, frame: pd.DataFrame) -> ImageTable:
        return replace(self, frame=frame.reset_index(drop=True))

    def rows(self, keep: np.ndarray) -> ImageTable:
        """The table restricted to the rows where `keep` (a boolean mask or positions)."""
        keep = np.asarray(keep)
        part = self.frame[keep] if keep.dtype == bool else self.frame.iloc[keep]
        return self.with_frame(part)

    def class_matrix(self, task: str, classes: list[str]) -> np.ndarray:
        """(N, C) booleans: row i has class c (multiclass: its label; multilabel: each label)."""
        index = {c: j for j, c in enumerate(classes)}
        matrix = np.zeros((len(self.frame), len(classes)), dtype=bool)
        for i, value in enumerate(self.frame[task]):
            names = [value] if isinstance(value, str) else (value or [])
            matrix[i, [index[c] for c in names if c in index]] = True
        return matrix


@dataclass
class PreparedTable:
    """The result of all steps: tasks, kept rows with their encoded targets and split, reports."""

    tasks: list[TaskSpec]
    frame: pd.DataFrame
    targets: dict[str, np.ndarray]
    split: np.ndarray
    listed: int
    skipped: list[dict[str, str]]
    balance: dict[str, Any]
