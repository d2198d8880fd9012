"""Generic class-per-folder datasets: `root/<class>/*.jpg`, or `root/{train,val,test}/<class>/*.jpg`
(the validation folder may also be named `valid` or `validation`, as in many Kaggle archives)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.data.images import is_image_file
from fashionlab.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

#: Folder names next to train/ read as each split.
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


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
    a `train` folder (and optionally `val`, `test`), those folders are the official split. A
    class folder without images, or with too few for every split, is an error naming it."""

    strict_class_splits = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(self.tasks_cfg) != 1:
            raise ConfigError(f"data.tasks: image_folder has one task (the folder name); got "
                              f"{', '.join(self.tasks_cfg)}")
        self.task_name = next(iter(self.tasks_cfg))

    def read_table(self) -> pd.DataFrame:
        root = self.require_root()
        official = (root / "train").is_dir()
        bases = split_folders(root) if official else [(root, None)]
        rows, empty = [], []
        for base, split in bases:
            for cls_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
                images = list_images(cls_dir)
                if not images:
                    empty.append(cls_dir)
                for path in images:
                    rel = path.relative_to(root).as_posix()
                    rows.append({"path": rel, "split": split, self.task_name: cls_dir.name,
                                 "id": rel, "source": rel})
        self._empty_folders(empty)
        return pd.DataFrame(rows, columns=["path", "split", self.task_name, "id", "source"])

    def _empty_folders(self, empty: list[Path]) -> None:
        """A class folder without images is an error naming it, unless rare classes are dropped
        (data.balance.min_count > 0, rare: drop): then it is left out, logged and listed in
        read_report.json (`empty_class_folders`)."""
        if not empty:
            return
        names = ", ".join(f"{p}/ (0 images)" for p in empty)
        if self.balance.min_count > 0 and self.balance.rare == "drop":
            self.read_report["empty_class_folders"] = [str(p) for p in empty]
            log.warning("%d class folder(s) without images left out (data.balance.min_count=%d, "
                        "rare=drop): %s", len(empty), self.balance.min_count, names)
            return
        raise DataFormatError(
            f"class folder(s) without images: {names}. Add images or remove the folder, or leave "
            f"classes under N images out and list them with data.balance.min_count=N "
            f"(data.balance.rare=drop)")

    def describe_class(self, name: str) -> str:
        root = self.require_root()
        return f"class folder {(root / 'train' if (root / 'train').is_dir() else root) / name}/"


def split_folders(root: Path) -> list[tuple[Path, str]]:
    """(folder, split) for train/ and the val / test folders next to it; any other visible
    folder there, or two folders for one split, is an error naming them."""
    names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    known = {name: split for split, options in SPLIT_FOLDERS.items() for name in options}
    unknown = sorted(names - set(known))
    if unknown:
        raise DataFormatError(
            f"{root}: folder(s) {', '.join(n + '/' for n in unknown)} next to train/ are not a split; "
            f"expected only {', '.join(n + '/' for n in known)} (move class folders into train/)")
    out = []
    for split, options in SPLIT_FOLDERS.items():
        found = [n for n in options if n in names]
        if len(found) > 1:
            raise DataFormatError(f"{root}: {' and '.join(n + '/' for n in found)} are both there; "
                                  f"keep one folder for the {split} split")
        out += [(root / found[0], split)] if found else []
    return out
