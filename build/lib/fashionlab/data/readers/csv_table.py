"""Generic CSV of labelled images: an image-path column plus any label columns, one per task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.data.tables import read_csv_table, split_values


class CsvDataModule(ImageTableDataModule):
    """Images listed in `csv_file` (relative to `root`): the `path_column` holds the image path
    (relative to `root/image_dir`, or absolute), each task reads the column `columns[task]`
    (default: the task's name); multilabel cells hold several names split by `separators`
    ("a|b"). An optional `split_column` gives the official train/val/test partition."""

    def __init__(
        self,
        csv_file: str = "labels.csv",
        path_column: str = "path",
        image_dir: str | None = None,
        columns: Mapping[str, str] | None = None,
        split_column: str | None = None,
        id_column: str | None = None,
        separators: Sequence[str] = ("|",),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.csv_file = csv_file
        self.path_column = path_column
        self.image_dir = image_dir
        self.columns = {t: str((columns or {}).get(t, t)) for t in self.tasks_cfg}
        self.split_column = split_column
        self.id_column = id_column
        self.separators = tuple(separators)

    def csv_path(self) -> Path:
        return self.require_root() / self.csv_file

    def read_csv(self) -> pd.DataFrame:
        """The CSV with its header checked: the path, task, split and id columns must exist."""
        required = [self.path_column, *self.columns.values()]
        required += [c for c in (self.split_column, self.id_column) if c]
        return read_csv_table(self.csv_path(), required=list(dict.fromkeys(required)))

    def cell_labels(self, task: str, value: Any, source: str) -> Any:
        """A cell as the table's label value: a name (multiclass) or a list of names (multilabel)."""
        if self.tasks_cfg[task]["kind"] == "multilabel":
            return split_values(value, self.separators)
        return value

    def read_table(self) -> pd.DataFrame:
        raw = self.read_csv()
        image_dir = Path(self.image_dir) if self.image_dir else Path()
        table = pd.DataFrame({
            "path": [None if p is None else (image_dir / p).as_posix() for p in raw[self.path_column]],
            "source": raw["source"],
        })
        for task, column in self.columns.items():
            table[task] = pd.Series(
                [self.cell_labels(task, v, s) for v, s in zip(raw[column], raw["source"], strict=True)],
                dtype=object)
        if self.split_column:
            table["split"] = raw[self.split_column]
        if self.id_column:
            table["id"] = raw[self.id_column]
        return table
