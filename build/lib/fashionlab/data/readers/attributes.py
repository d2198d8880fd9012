"""Attribute tables: image path + one column per attribute (pattern, fabric, style, shape, ...),
single-valued (multiclass) or multi-valued (multilabel, "cotton|denim"), as used to build
"fashion vectors"."""

from __future__ import annotations

from typing import Any

from fashionlab.data.readers.csv_table import CsvDataModule
from fashionlab.data.tables import is_missing, split_values
from fashionlab.errors import ConfigError, DataFormatError

EMPTY_MEANINGS = ("unknown", "none")


class AttributesCsvDataModule(CsvDataModule):
    """A CsvDataModule for attribute tables. An empty multi-valued cell means `empty`:
    `unknown` (ignored by loss and metrics) or `none` (the item has none of the attribute's
    values). Several values in a single-valued attribute's cell are an error naming the file,
    line and attribute."""

    def __init__(self, empty: str = "unknown", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if empty not in EMPTY_MEANINGS:
            raise ConfigError(f"data.empty={empty!r}; expected one of {', '.join(EMPTY_MEANINGS)}")
        self.empty = empty

    def cell_labels(self, task: str, value: Any, source: str) -> Any:
        values = split_values(value, self.separators)
        if self.tasks_cfg[task]["kind"] == "multilabel":
            if values is None and self.empty == "none":
                return []
            return values
        if values is not None and len(values) > 1:
            raise DataFormatError(
                f"{source}: attribute {task!r} (column {self.columns[task]!r}) has several values "
                f"{values}; declare data.tasks.{task}.kind=multilabel for a multi-valued attribute")
        return None if is_missing(value) else values[0]
