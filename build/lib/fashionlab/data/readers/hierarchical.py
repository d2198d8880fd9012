"""Hierarchical item folders: `root/<primary>/[<gender>/]<item>/*.jpg`.

E.g. `shoes/female/sandals/1.jpg`, `glasses/sunglasses/2.jpg`, `trousers/male/jeans/3.jpg`. Tasks:
`primary` (top folder), `gender` (a second-level folder named in `gender_folders`; unknown where
absent) and `item` (the next folder), whose classes are children of `primary`. An item name found
under several primaries (`bags/other`, `shoes/other`) becomes one class per primary, qualified as
"<primary>/<item>". Images directly in a primary (or gender) folder have no item label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.data.readers.image_folder import list_images
from fashionlab.errors import ConfigError, DataFormatError

GENDER_FOLDERS = ("female", "male", "unisex", "women", "men", "girls", "boys", "kids")


class HierarchicalItemsDataModule(ImageTableDataModule):
    """Folder tree primary/[gender/]item/*.jpg; task names are configurable through
    `primary_task`, `gender_task` and `item_task` (they must be tasks of the data config)."""

    def __init__(
        self,
        gender_folders: Sequence[str] = GENDER_FOLDERS,
        primary_task: str = "primary",
        gender_task: str = "gender",
        item_task: str = "item",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gender_folders = {str(g).lower() for g in gender_folders}
        self.names = {"primary": primary_task, "gender": gender_task, "item": item_task}
        for role, name in self.names.items():
            if role != "gender" and name not in self.tasks_cfg:
                raise ConfigError(f"data.tasks has no {role} task {name!r}")
        item_cfg = self.tasks_cfg[item_task]
        if item_cfg.get("parent") != primary_task:
            raise ConfigError(f"data.tasks.{item_task}.parent must be {primary_task!r}")

    def read_table(self) -> pd.DataFrame:
        root = self.require_root()
        rows = []
        for path in list_images(root):
            rel = path.relative_to(root)
            folders = rel.parts[:-1]
            if not folders:
                raise DataFormatError(
                    f"{path}: image directly in data.root; expected "
                    f"<primary>/[<gender>/]<item>/<image> (e.g. shoes/female/sandals/1.jpg)")
            primary, rest = folders[0], list(folders[1:])
            gender = rest.pop(0) if rest and rest[0].lower() in self.gender_folders else None
            item = rest[0] if rest else None
            rows.append({"path": rel.as_posix(), "id": rel.as_posix(), "source": rel.as_posix(),
                         "primary": primary, "gender": gender, "item": item})
        table = pd.DataFrame(rows, columns=["path", "id", "source", "primary", "gender", "item"])
        primaries_of = table.dropna(subset=["item"]).groupby("item")["primary"].nunique()
        shared = set(primaries_of[primaries_of > 1].index)
        table["item"] = [f"{p}/{i}" if i in shared else i
                         for p, i in zip(table["primary"], table["item"], strict=True)]
        table = table.rename(columns={role: name for role, name in self.names.items()})
        if self.names["gender"] not in self.tasks_cfg:
            table = table.drop(columns=[self.names["gender"]])
        return table
