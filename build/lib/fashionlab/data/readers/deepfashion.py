"""DeepFashion Category and Attribute Prediction Benchmark, read from its published list files.

Layout under the data root: `img/<folder>/<image>.jpg`, `Anno/list_category_cloth.txt`,
`Anno/list_category_img.txt`, `Anno/list_attr_cloth.txt`, `Anno/list_attr_img.txt` and
`Eval/list_eval_partition.txt`. Every list file starts with a count line and a header line.
Category labels in `list_category_img.txt` are 1-based. Attribute values are 1 (present) and -1
(absent); the fine-grained release also uses 0, read as absent (a multilabel target has no
per-label "unknown").
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
    read_counted_list,
    split_name_and_value,
)
from fashionlab.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

BODY_PARTS: dict[str, str] = {"1": "upper", "2": "lower", "3": "full"}
ATTRIBUTE_GROUPS: dict[str, str] = {"1": "texture", "2": "fabric", "3": "shape", "4": "part", "5": "style"}
SPLIT_NAMES = ("train", "val", "test")
FILES: dict[str, str] = {
    "category_cloth": "Anno/list_category_cloth.txt",
    "category_img": "Anno/list_category_img.txt",
    "attr_cloth": "Anno/list_attr_cloth.txt",
    "attr_img": "Anno/list_attr_img.txt",
    "partition": "Eval/list_eval_partition.txt",
}


def _read_named_types(path: str | Path, types: dict[str, str], what: str) -> list[tuple[str, str]]:
    """Rows `<name with spaces> <type code>` -> [(name, type name)] in file order."""
    path = open_text(path)
    _, rows = read_counted_list(path)
    out = []
    for number, line in rows:
        name, code = split_name_and_value(path, number, line)
        if code not in types:
            raise DataFormatError(
                f"{path}:{number}: {what} type {code!r} of {name!r} is not one of "
                f"{', '.join(f'{k} ({v})' for k, v in types.items())}")
        out.append((name, types[code]))
    names = [n for n, _ in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataFormatError(f"{path}: repeated {what} names: {', '.join(duplicates)}")
    return out


def read_category_cloth(path: str | Path) -> list[tuple[str, str]]:
    """[(category name, body part: upper/lower/full)]; position i is label i + 1."""
    return _read_named_types(path, BODY_PARTS, "category")


def read_attr_cloth(path: str | Path) -> list[tuple[str, str]]:
    """[(attribute name, group: texture/fabric/shape/part/style)] in column order."""
    return _read_named_types(path, ATTRIBUTE_GROUPS, "attribute")


def read_category_img(path: str | Path, num_categories: int) -> pd.DataFrame:
    """Columns `image`, `label` (1-based, checked against `num_categories`), `line`."""
    path = open_text(path)
    _, rows = read_counted_list(path)
    images, labels, lines = [], [], []
    for number, line in rows:
        image, value = split_name_and_value(path, number, line)
        try:
            label = int(value)
        except ValueError:
            raise DataFormatError(f"{path}:{number}: category label {value!r} is not an integer") from None
        if not 1 <= label <= num_categories:
            raise DataFormatError(
                f"{path}:{number}: category label {label} outside 1..{num_categories} "
                f"(labels are 1-based indices into list_category_cloth.txt)")
        images.append(image)
        labels.append(label)
        lines.append(number)
    check_unique_names(path, images, lines)
    return pd.DataFrame({"image": images, "label": labels, "line": lines})


def read_eval_partition(path: str | Path) -> pd.DataFrame:
    """Columns `image`, `split` (train/val/test), `line`."""
    path = open_text(path)
    _, rows = read_counted_list(path)
    images, splits, lines = [], [], []
    for number, line in rows:
        image, split = split_name_and_value(path, number, line)
        if split not in SPLIT_NAMES:
            raise DataFormatError(
                f"{path}:{number}: evaluation status {split!r} is not one of {', '.join(SPLIT_NAMES)}")
        images.append(image)
        splits.append(split)
        lines.append(number)
    check_unique_names(path, images, lines)
    return pd.DataFrame({"image": images, "split": splits, "line": lines})


def _parse_attr_rows_slowly(path: Path, num_attributes: int) -> tuple[list[str], np.ndarray, list[int]]:
    """Line-by-line parse with errors naming the line (used when the fast parse fails)."""
    images, values, lines = [], [], []
    for number, line in iter_rows(path):
        fields = line.split()
        if len(fields) != num_attributes + 1:
            raise DataFormatError(
                f"{path}:{number}: expected an image name and {num_attributes} attribute values, "
                f"got {len(fields) - 1} values")
        bad = [v for v in fields[1:] if v not in ("1", "-1", "0")]
        if bad:
            raise DataFormatError(f"{path}:{number}: attribute value {bad[0]!r} is not 1, -1 or 0")
        images.append(fields[0])
        values.append(np.array(fields[1:], dtype=np.int8))
        lines.append(number)
    matrix = np.stack(values) if values else np.zeros((0, num_attributes), np.int8)
    return images, matrix, lines


def _parse_attr_rows_fast(path: Path, num_attributes: int
                          ) -> tuple[list[str], np.ndarray, list[int]] | None:
    """Byte-level parse (each value -1 / 1 / 0 becomes one character); None when any row does
    not fit, so that the line-by-line parse can name it."""
    images: list[str] = []
    lines: list[int] = []
    chunks: list[bytes] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= 2 or not line.strip():
                continue
            parts = line.split(None, 1)
            if len(parts) != 2 or b"2" in parts[1]:
                return None
            values = parts[1].replace(b"-1", b"2").translate(None, b" \t\r\n")
            if len(values) != num_attributes:
                return None
            images.append(parts[0].decode("utf-8-sig"))
            lines.append(number)
            chunks.append(values)
    codes = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(len(images), num_attributes)
    lookup = np.full(256, 9, dtype=np.int8)
    lookup[[ord("0"), ord("1"), ord("2")]] = [0, 1, -1]
    matrix = lookup[codes]
    if (matrix == 9).any():
        return None
    return images, matrix, lines


def read_attr_img(path: str | Path, num_attributes: int) -> tuple[list[str], np.ndarray]:
    """Image names and an (N, num_attributes) int8 matrix of 1 / -1 / 0 values."""
    path = open_text(path)
    declared, _ = read_count_and_header(path)
    parsed = _parse_attr_rows_fast(path, num_attributes)
    images, matrix, lines = parsed if parsed is not None else _parse_attr_rows_slowly(path, num_attributes)
    check_count(path, declared, len(images))
    check_unique_names(path, images, lines)
    return images, matrix


def _check_same_images(reference: pd.Series, ref_file: Path, other: Sequence[str], other_file: Path) -> None:
    missing = pd.Index(reference).difference(pd.Index(other))
    if len(missing):
        raise DataFormatError(
            f"{other_file}: {len(missing)} image(s) of {ref_file.name} are not listed, e.g. {missing[0]}")
    extra = pd.Index(other).difference(pd.Index(reference))
    if len(extra):
        raise DataFormatError(
            f"{other_file}: {len(extra)} image(s) are not in {ref_file.name}, e.g. {extra[0]}")


def deepfashion_table(
    root: str | Path,
    body_parts: Sequence[str] = ("upper", "lower", "full"),
    attribute_groups: Sequence[str] = (),
    images_dir: str = "",
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The benchmark as an image table, and the attribute names of each requested group.

    Columns: `path` (absolute), `split` (official partition), `id` (image name), `source`
    (file:line), `category` (name), `body_part` (upper/lower/full), and one column per attribute
    group with the list of its positive attributes. Only images whose category is worn on one
    of `body_parts` are kept.
    """
    root = Path(root)
    unknown = [p for p in body_parts if p not in BODY_PARTS.values()]
    if unknown:
        raise ConfigError(f"data.body_parts: unknown body part(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(BODY_PARTS.values())}")
    unknown = [g for g in attribute_groups if g not in ATTRIBUTE_GROUPS.values()]
    if unknown:
        raise ConfigError(f"data.attribute_groups: unknown group(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(ATTRIBUTE_GROUPS.values())}")
    files = {key: root / rel for key, rel in FILES.items()}
    partition = read_eval_partition(files["partition"])
    table = pd.DataFrame({
        "path": [str(root / images_dir / name) for name in partition["image"]],
        "split": partition["split"].to_numpy(),
        "id": partition["image"].to_numpy(),
        "source": [f"{files['partition'].name}:{n}" for n in partition["line"]],
    })
    categories = read_category_cloth(files["category_cloth"])
    labels = read_category_img(files["category_img"], len(categories))
    _check_same_images(partition["image"], files["partition"], labels["image"], files["category_img"])
    label_of = dict(zip(labels["image"], labels["label"], strict=True))
    names = [categories[label_of[image] - 1] for image in partition["image"]]
    table["category"] = [name for name, _ in names]
    table["body_part"] = [part for _, part in names]
    keep = table["body_part"].isin(list(body_parts)).to_numpy()
    log.info("DeepFashion: %d of %d images in body parts %s", keep.sum(), len(keep), list(body_parts))
    groups: dict[str, list[str]] = {}
    if attribute_groups:
        attributes = read_attr_cloth(files["attr_cloth"])
        images, values = read_attr_img(files["attr_img"], len(attributes))
        _check_same_images(partition["image"], files["partition"], images, files["attr_img"])
        order = pd.Index(images).get_indexer(partition["image"])
        values = values[order] > 0
        for group in attribute_groups:
            columns = [i for i, (_, g) in enumerate(attributes) if g == group]
            groups[group] = [attributes[i][0] for i in columns]
            sub = values[:, columns]
            table[group] = [[groups[group][j] for j in np.flatnonzero(row)] for row in sub]
    return table[keep].reset_index(drop=True), groups


class DeepFashionDataModule(ImageTableDataModule):
    """DeepFashion Category and Attribute Prediction: tasks `category`, `body_part` and any of
    the attribute groups (multilabel), with the official train/val/test partition."""

    tasks_from_data = True

    def __init__(self, body_parts: Sequence[str] = ("upper", "lower", "full"), images_dir: str = "",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.body_parts = list(body_parts)
        self.images_dir = images_dir

    def read_table(self) -> pd.DataFrame:
        groups = [t for t in self.tasks_cfg if t in ATTRIBUTE_GROUPS.values()]
        table, attributes = deepfashion_table(self.require_root(), self.body_parts, groups, self.images_dir)
        self.read_report = {"images": len(table), "body_parts": self.body_parts,
                            "attributes": {g: len(names) for g, names in attributes.items()}}
        return table

