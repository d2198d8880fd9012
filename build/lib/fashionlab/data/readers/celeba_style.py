"""CelebA as a face-style dataset: styles derived from the 40 published attributes by config rules.

Files under the data root (either directly or in `Anno/` and `Eval/` as in the official
release): `list_attr_celeba.txt` (count line, the 40 attribute names, then `<image> <40 values of
1 / -1>` with variable spacing), `list_eval_partition.txt` (`<image> 0|1|2` for train/val/test)
and the images in `img_align_celeba/`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.data.readers.counted_list import (
    check_count,
    check_unique_names,
    iter_rows,
    open_text,
    read_count_and_header,
)
from fashionlab.data.readers.reader_utils import find_file
from fashionlab.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

PARTITION_SPLITS: dict[str, str] = {"0": "train", "1": "val", "2": "test"}
RULE_KEYS = ("any_of", "all_of", "none_of")


def read_celeba_attributes(path: str | Path) -> pd.DataFrame:
    """Index: image name; one int8 column (1 / -1) per attribute, in file order; the line
    number of each row in `.attrs["lines"]`."""
    path = open_text(path)
    declared, header = read_count_and_header(path)
    names = header.split()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataFormatError(f"{path}:2: repeated attribute names: {', '.join(duplicates)}")
    images, rows, numbers = [], [], []
    for number, line in iter_rows(path):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise DataFormatError(f"{path}:{number}: expected an image name and {len(names)} "
                                  f"attribute values, got {len(fields) - 1} values")
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            raise DataFormatError(f"{path}:{number}: attribute values must be 1 or -1") from None
        if any(v not in (1, -1) for v in values):
            bad = next(v for v in values if v not in (1, -1))
            raise DataFormatError(f"{path}:{number}: attribute value {bad} is not 1 or -1")
        images.append(fields[0])
        rows.append(values)
        numbers.append(number)
    check_count(path, declared, len(images))
    check_unique_names(path, images, numbers)
    matrix = np.array(rows, dtype=np.int8).reshape(len(images), len(names))
    table = pd.DataFrame(matrix, columns=names, index=pd.Index(images, name="image"))
    table.attrs["lines"] = numbers
    return table


def read_celeba_partition(path: str | Path) -> pd.Series:
    """Split name (train/val/test) per image name, from the 0 / 1 / 2 codes."""
    path = open_text(path)
    images, splits, numbers = [], [], []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in PARTITION_SPLITS:
                raise DataFormatError(f"{path}:{number}: expected '<image> 0|1|2', got {line.strip()[:80]!r}")
            images.append(fields[0])
            splits.append(PARTITION_SPLITS[fields[1]])
            numbers.append(number)
    check_unique_names(path, images, numbers)
    return pd.Series(splits, index=pd.Index(images, name="image"), name="split")


def check_style_rules(rules: Mapping[str, Mapping[str, Any]], attributes: Sequence[str],
                      key: str = "data.styles") -> None:
    """Each style has at least one condition, and every condition names known attributes."""
    if not rules:
        raise ConfigError(f"{key} is empty: declare at least one style")
    for style, rule in rules.items():
        unknown_keys = [k for k in (rule or {}) if k not in RULE_KEYS]
        if unknown_keys:
            raise ConfigError(f"{key}.{style}: unknown key(s) {', '.join(unknown_keys)}; "
                              f"expected {', '.join(RULE_KEYS)}")
        if not any((rule or {}).get(k) for k in RULE_KEYS):
            raise ConfigError(f"{key}.{style}: needs at least one of {', '.join(RULE_KEYS)}")
        for cond in RULE_KEYS:
            for name in (rule or {}).get(cond) or []:
                if name not in attributes:
                    raise ConfigError(f"{key}.{style}.{cond}: unknown CelebA attribute {name!r}")


def derive_styles(attributes: pd.DataFrame, rules: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Boolean (N, styles) frame: a style holds when any `any_of` attribute is present (if
    given), all `all_of` attributes are present and no `none_of` attribute is."""
    check_style_rules(rules, list(attributes.columns))
    positive = attributes > 0
    out = {}
    for style, rule in rules.items():
        mask = np.ones(len(attributes), dtype=bool)
        if rule.get("any_of"):
            mask &= positive[list(rule["any_of"])].any(axis=1).to_numpy()
        if rule.get("all_of"):
            mask &= positive[list(rule["all_of"])].all(axis=1).to_numpy()
        if rule.get("none_of"):
            mask &= ~positive[list(rule["none_of"])].any(axis=1).to_numpy()
        out[style] = mask
    return pd.DataFrame(out, index=attributes.index)


def celeba_style_table(
    root: str | Path,
    rules: Mapping[str, Mapping[str, Any]],
    task: str = "style",
    images_dir: str = "img_align_celeba",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Image table with the official split and a multilabel `task` column (list of styles), one
    row per image of the attribute file (styles are balanced by the `data.balance` step)."""
    root = Path(root)
    attr_file = find_file(root, ["list_attr_celeba.txt", "Anno/list_attr_celeba.txt"],
                          "CelebA attribute file list_attr_celeba.txt")
    part_file = find_file(root, ["list_eval_partition.txt", "Eval/list_eval_partition.txt"],
                          "CelebA partition file list_eval_partition.txt")
    attributes = read_celeba_attributes(attr_file)
    partition = read_celeba_partition(part_file)
    missing = attributes.index.difference(partition.index)
    if len(missing):
        raise DataFormatError(f"{part_file}: {len(missing)} image(s) of {attr_file.name} have no "
                              f"partition, e.g. {missing[0]}")
    image_root = root / images_dir
    if (image_root / Path(images_dir).name).is_dir():  # Kaggle's copy nests the folder in itself
        image_root = image_root / Path(images_dir).name
    styles = derive_styles(attributes, rules)
    report = {"images": len(styles), "positives": {k: int(v) for k, v in styles.sum().items()},
              "unlabelled": int((~styles.any(axis=1)).sum())}
    names = list(styles.columns)
    lines = dict(zip(attributes.index, attributes.attrs["lines"], strict=True))
    table = pd.DataFrame({
        "path": [str(image_root / image) for image in styles.index],
        "split": partition.reindex(styles.index).to_numpy(),
        "id": styles.index.to_numpy(),
        "source": [f"{attr_file.name}:{lines[image]}" for image in styles.index],
        task: [[names[j] for j in np.flatnonzero(row)] for row in styles.to_numpy()],
    })
    log.info("CelebA styles: %s", report)
    return table, report


class CelebAStyleDataModule(ImageTableDataModule):
    """CelebA faces with one multilabel style task derived from the attributes (see module doc)."""

    tasks_from_data = True

    def __init__(
        self,
        styles: Mapping[str, Mapping[str, Any]],
        images_dir: str = "img_align_celeba",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(self.tasks_cfg) != 1:
            raise ConfigError(f"data.tasks: celeba_style has one task (the styles); got "
                              f"{', '.join(self.tasks_cfg)}")
        self.task_name, entry = next(iter(self.tasks_cfg.items()))
        if entry.get("kind") != "multilabel":
            raise ConfigError(f"data.tasks.{self.task_name}.kind must be multilabel (an image can have "
                              f"several styles)")
        classes = entry.get("classes")
        if classes != "auto" and sorted(map(str, classes or [])) != sorted(styles or {}):
            raise ConfigError(f"data.tasks.{self.task_name}.classes must list the styles of data.styles "
                              f"({', '.join(styles or {})})")
        self.styles = {str(k): dict(v or {}) for k, v in (styles or {}).items()}
        self.images_dir = images_dir
        self.class_order = {self.task_name: list(self.styles)}

    def read_table(self) -> pd.DataFrame:
        table, self.read_report = celeba_style_table(
            self.require_root(), self.styles, self.task_name, self.images_dir)
        return table
