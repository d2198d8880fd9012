"""Kaggle Fashion Product Images (Myntra): `styles.csv` plus `images/<id>.jpg`.

Two published versions: the full one (`styles.csv`, `images/`, `styles/<id>.json`; the Kaggle
archive nests them in `fashion-dataset/`) and the small one (`myntradataset/styles.csv`,
`myntradataset/images/`). `styles.csv` is written without quoting, so about 22 rows whose last
column, `productDisplayName`, contains commas have more fields than the header; they are recovered
by joining the trailing fields back with commas.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
    "season", "year", "usage", "productDisplayName",
)
LABEL_COLUMNS: tuple[str, ...] = (
    "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
)
LAYOUTS: tuple[str, ...] = ("", "myntradataset", "fashion-dataset")


def read_styles_csv(path: str | Path) -> tuple[pd.DataFrame, list[int]]:
    """All columns as str (None for empty cells) plus `line`; and the recovered rows' line numbers.

    A row with more fields than the header is recovered when the last column is free text
    (`productDisplayName`): its trailing fields are joined back with commas. A row with fewer
    fields, or extra fields with any other last column, raises DataFormatError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: file not found")
    recovered: list[int] = []
    records: list[list[str | None]] = []
    lines: list[int] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise DataFormatError(f"{path}:1: empty file, expected the header {','.join(COLUMNS)}")
        header = [h.strip() for h in header]
        missing = [c for c in ("id", *LABEL_COLUMNS) if c not in header]
        if missing:
            raise DataFormatError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
        width = len(header)
        free_text_last = header[-1] == "productDisplayName"
        for fields in reader:
            number = reader.line_num
            if not fields or fields == [""]:
                continue
            if len(fields) > width and free_text_last:
                fields = [*fields[: width - 1], ",".join(fields[width - 1 :])]
                recovered.append(number)
            if len(fields) != width:
                raise DataFormatError(f"{path.name}:{number}: expected {width} fields, got {len(fields)}"
                                      f" ({path})")
            records.append([f.strip() or None for f in fields])
            lines.append(number)
    table = pd.DataFrame(records, columns=header)
    table["line"] = lines
    bad_id = table["id"].isna() | ~table["id"].fillna("").str.fullmatch(r"\d+")
    if bad_id.any():
        row = table[bad_id].iloc[0]
        raise DataFormatError(f"{path.name}:{row['line']}: id {row['id']!r} is not a number ({path})")
    duplicated = table["id"].duplicated(keep="first")
    if duplicated.any():
        row = table[duplicated].iloc[0]
        first = table.loc[table["id"] == row["id"], "line"].iloc[0]
        raise DataFormatError(f"{path.name}:{row['line']}: id {row['id']} repeats line {first} ({path})")
    return table, recovered


def locate_products(root: str | Path, layout: str | None = None, styles_file: str = "styles.csv") -> Path:
    """The folder holding `styles_file`: `root/layout`, or with layout None the first of
    `root`, `root/myntradataset` (small version), `root/fashion-dataset` (full archive)."""
    root = Path(root)
    candidates = [root / layout] if layout is not None else [root / sub for sub in LAYOUTS]
    for folder in candidates:
        if (folder / styles_file).is_file():
            return folder
    raise DataNotFoundError(
        f"{styles_file} not found; looked in {', '.join(str(c) for c in candidates)}. Get the data from "
        f"Kaggle (paramaggarwal/fashion-product-images-dataset or -small) and pass data.root=<folder>")


def list_images(folder: Path) -> set[str]:
    """File names in `folder` (one directory scan instead of a stat per row)."""
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: image folder not found")
    with os.scandir(folder) as entries:
        return {e.name for e in entries}


def products_table(
    root: str | Path,
    tasks: Sequence[str],
    layout: str | None = None,
    styles_file: str = "styles.csv",
    images_dir: str = "images",
    image_name: str = "{id}.jpg",
    missing_images: str = "skip",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Image table: `path`, `id`, `source` (styles.csv:line) and one column per task (a
    styles.csv column name). Rows whose image file is absent are skipped and counted
    (`missing_images: skip`) or raise (`error`). Returns the table and a report."""
    unknown = [t for t in tasks if t not in LABEL_COLUMNS]
    if unknown:
        raise ConfigError(f"data.tasks.{unknown[0]}: not a styles.csv label column; "
                          f"choose from {', '.join(LABEL_COLUMNS)}")
    if missing_images not in ("skip", "error"):
        raise ConfigError(f"data.missing_images is {missing_images!r}; expected skip or error")
    folder = locate_products(root, layout, styles_file)
    styles, recovered = read_styles_csv(folder / styles_file)
    report: dict[str, Any] = {"styles_file": str(folder / styles_file), "rows": len(styles),
                              "recovered_rows": recovered}
    if recovered:
        log.info("%s: recovered %d rows whose productDisplayName contains commas (lines %s)",
                 styles_file, len(recovered), ", ".join(map(str, recovered[:10])))
    image_folder = folder / images_dir
    present = list_images(image_folder)
    names = [image_name.format(id=i) for i in styles["id"]]
    has_image = pd.Series([n in present for n in names], index=styles.index)
    absent = styles.loc[~has_image, ["id", "line"]]
    if len(absent) and missing_images == "error":
        row = absent.iloc[0]
        raise DataNotFoundError(f"{styles_file}:{row['line']}: image {image_folder / names[row.name]} "
                                f"of id {row['id']} not found ({len(absent)} missing in all)")
    report["missing_images"] = absent["id"].tolist()
    if len(absent):
        log.warning("%s: %d ids have no image in %s and are skipped (e.g. %s)", styles_file,
                    len(absent), image_folder, ", ".join(absent["id"].head(5)))
    table = pd.DataFrame({
        "path": [str(image_folder / n) for n in names],
        "id": styles["id"].astype(int).to_numpy(),
        "source": [f"{styles_file}:{n}" for n in styles["line"]],
    })
    for task in tasks:
        table[task] = styles[task].to_numpy()
    table = table[has_image.to_numpy()].reset_index(drop=True)
    report["unknown_labels"] = {t: int(table[t].isna().sum()) for t in tasks}
    report["images"] = len(table)
    return table, report


class FashionProductsDataModule(ImageTableDataModule):
    """Fashion Product Images: one head per configured styles.csv column (see module doc)."""

    tasks_from_data = True

    def __init__(
        self,
        layout: str | None = None,
        styles_file: str = "styles.csv",
        images_dir: str = "images",
        image_name: str = "{id}.jpg",
        missing_images: str = "skip",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.layout = layout
        self.styles_file = styles_file
        self.images_dir = images_dir
        self.image_name = image_name
        self.missing_images = missing_images

    def read_table(self) -> pd.DataFrame:
        # a parent task with an explicit parent_of map is derived from its child by the base
        derived = {str(e["parent"]) for e in self.tasks_cfg.values()
                   if e.get("parent") and isinstance(e.get("parent_of"), Mapping)}
        columns = [t for t in self.tasks_cfg if t in LABEL_COLUMNS or t not in derived]
        table, self.read_report = products_table(
            self.require_root(), columns, self.layout, self.styles_file, self.images_dir,
            self.image_name, self.missing_images)
        return table

    def data_stats(self) -> dict[str, Any]:
        stats = super().data_stats()
        stats.update(data_recovered_rows=len(self.read_report.get("recovered_rows", [])),
                     data_missing_images=len(self.read_report.get("missing_images", [])))
        return stats
