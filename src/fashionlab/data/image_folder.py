"""Generic class-per-folder datasets: `root/<class>/*.jpg`, or `root/{train,val,test}/<class>/*.jpg`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from fashionlab.data.datamodule import SPLITS
from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.data.images import is_image_file
from fashionlab.errors import ConfigError


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted; hidden files and folders are ignored."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and is_image_file(f)]
    return found


class ImageFolderDataModule(ImageTableDataModule):
    """One task; its class is the name of the folder under `root` (or under `root/<split>/`)
    holding the image; images in deeper sub-folders belong to the same class. When `root` holds
    a `train` folder (and optionally `val`, `test`), those folders are the official split."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(self.tasks_cfg) != 1:
            raise ConfigError(f"data.tasks: image_folder has one task (the folder name); got "
                              f"{', '.join(self.tasks_cfg)}")
        self.task_name = next(iter(self.tasks_cfg))

    def read_table(self) -> pd.DataFrame:
        root = self.require_root()
        official = (root / "train").is_dir()
        bases = [(root / s, s) for s in SPLITS if (root / s).is_dir()] if official else [(root, None)]
        rows = []
        for base, split in bases:
            for cls_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for path in list_images(cls_dir):
                    rel = path.relative_to(root).as_posix()
                    rows.append({"path": rel, "split": split, self.task_name: cls_dir.name,
                                 "id": rel, "source": rel})
        return pd.DataFrame(rows, columns=["path", "split", self.task_name, "id", "source"])
