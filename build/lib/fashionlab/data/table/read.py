"""Read step: a reader's DataFrame as an ImageTable (default columns, derived parents, labels
normalised, absolute and root-relative paths)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionlab.data.file_dataset import relative_to
from fashionlab.data.table.frame import ABS_PATH, ID, PATH, REL_PATH, SOURCE, ImageTable, objects
from fashionlab.data.tables import is_missing
from fashionlab.errors import DataFormatError


def as_table(raw: pd.DataFrame, root: Path, name: str, tasks_cfg: Mapping[str, Mapping[str, Any]],
             class_order: Mapping[str, list[str]] | None = None) -> ImageTable:
    """Check the `path` column, fill `source` / `id`, derive parent columns, normalise labels and
    add `abs_path` / `rel_path`."""
    frame = raw.reset_index(drop=True)
    if PATH not in frame.columns:
        raise DataFormatError(f"{name}.read_table() returned no 'path' column")
    if SOURCE not in frame.columns:
        frame[SOURCE] = [f"row {i}" for i in range(len(frame))]
    if ID not in frame.columns:
        frame[ID] = np.arange(len(frame))
    for i in np.flatnonzero(frame[PATH].map(is_missing).to_numpy()):
        raise DataFormatError(f"{frame.at[i, SOURCE]}: no image path")
    frame, derived = derive_missing_columns(frame, name, tasks_cfg)
    frame = normalise_labels(frame, tasks_cfg)
    if frame.empty:
        raise DataFormatError(f"{name}: no images found under {root}")
    frame[ABS_PATH] = [str(p if Path(p).is_absolute() else root / p) for p in frame[PATH]]
    frame[REL_PATH] = [relative_to(p, root) for p in frame[ABS_PATH]]
    return ImageTable(frame, root, tasks_cfg, name, frozenset(derived), dict(class_order or {}))


def derive_missing_columns(frame: pd.DataFrame, name: str, tasks_cfg: Mapping[str, Mapping[str, Any]]
                           ) -> tuple[pd.DataFrame, list[str]]:
    """A parent task without a column takes its labels from a child's explicit parent_of."""
    derived = []
    for task_name in tasks_cfg:
        if task_name in frame.columns:
            continue
        child = next(
            (c for c, e in tasks_cfg.items()
             if e.get("parent") == task_name and c in frame.columns
             and isinstance(e.get("parent_of"), Mapping)), None)
        if child is None:
            raise DataFormatError(
                f"{name}: the data has no labels for task {task_name!r} (data.tasks.{task_name}); "
                f"it provides: {', '.join(c for c in frame.columns if c in tasks_cfg) or 'none'}")
        mapping = {str(k): str(v) for k, v in tasks_cfg[child]["parent_of"].items()}
        frame[task_name] = objects(
            [None if is_missing(v) else mapping.get(str(v)) for v in frame[child]], frame)
        derived.append(task_name)
    return frame, derived


def normalise_labels(frame: pd.DataFrame, tasks_cfg: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Multiclass cells as a stripped name or None; multilabel cells as a sorted list or None."""
    for task_name, entry in tasks_cfg.items():
        values = frame[task_name].tolist()
        if entry["kind"] == "multiclass":
            frame[task_name] = objects(
                [None if is_missing(v) else str(v).strip() for v in values], frame)
        else:
            out = []
            for v in values:
                if isinstance(v, list | tuple | set | np.ndarray):
                    out.append(sorted({str(x).strip() for x in v if not is_missing(x)}))
                else:
                    out.append(None if is_missing(v) else [str(v).strip()])
            frame[task_name] = objects(out, frame)
    return frame
