"""DeepFashion In-shop Clothes Retrieval, read from its published list files.

Layout under the data root: `Eval/list_eval_partition.txt` (count line, header
`image_name item_id evaluation_status`, rows `train` / `query` / `gallery`), the optional
`Anno/list_bbox_inshop.txt` (header `image_name clothes_type pose_type x_1 y_1 x_2 y_2`) and
`Anno/list_item_inshop.txt` (count line, then one item id per line), and the images under
`Img/img/<GENDER>/<Type>/<item_id>/<nn>_<k>_<view>.jpg` (or `img/...` at the root). Columns are
padded with runs of spaces.

Splits: `train` (train items), `val` (a seeded carve of whole train items, stratified by clothes
type: items never trained on, as the query items are), `test` (the official query images) and
`gallery` (the official gallery images). Tasks: `item` (the item id, over the train items only;
val/test/gallery images carry no item class) and `clothes_type` (from the path, e.g. `Dresses`).
The item id of every image is kept as the retrieval label `item`: evaluation counts a gallery
image as relevant to a query when it shows the same item.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from fashionlab.data.image_table import ImageTableDataModule
from fashionlab.data.readers.counted_list import (
    check_count,
    check_unique_names,
    open_text,
    read_counted_list,
)
from fashionlab.data.splits import stratified_split
from fashionlab.data.table.split import size_of
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

STATUSES = ("train", "query", "gallery")
#: Official status -> split of the data module (the query images are the test split).
SPLIT_OF_STATUS: dict[str, str] = {"train": "train", "query": "test", "gallery": "gallery"}
PARTITION = "Eval/list_eval_partition.txt"
BBOX = "Anno/list_bbox_inshop.txt"
ITEMS = "Anno/list_item_inshop.txt"
#: Folders (relative to the root) that may hold `img/`: the release's `Img/`, or the root itself.
IMAGE_PARENTS = ("Img", "")


def read_partition(path: str | Path) -> pd.DataFrame:
    """Columns `image`, `item`, `status` (train/query/gallery), `line`."""
    path = open_text(path)
    _, rows = read_counted_list(path)
    images, items, statuses, lines = [], [], [], []
    for number, line in rows:
        fields = line.split()
        if len(fields) != 3:
            raise DataFormatError(f"{path}:{number}: expected '<image_name> <item_id> "
                                  f"<evaluation_status>', got {line[:80]!r}")
        image, item, status = fields
        if status not in STATUSES:
            raise DataFormatError(f"{path}:{number}: evaluation status {status!r} is not one of "
                                  f"{', '.join(STATUSES)}")
        folder_item = Path(image).parent.name
        if folder_item != item:
            raise DataFormatError(f"{path}:{number}: item_id {item} but the image {image} lies in "
                                  f"the folder of item {folder_item}")
        images.append(image)
        items.append(item)
        statuses.append(status)
        lines.append(number)
    check_unique_names(path, images, lines)
    return pd.DataFrame({"image": images, "item": items, "status": statuses, "line": lines})


def read_bboxes(path: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """{image name: (x_1, y_1, x_2, y_2)} in pixels of the published images."""
    path = open_text(path)
    _, rows = read_counted_list(path)
    boxes: dict[str, tuple[int, int, int, int]] = {}
    names, lines = [], []
    for number, line in rows:
        fields = line.split()
        if len(fields) != 7:
            raise DataFormatError(f"{path}:{number}: expected '<image_name> <clothes_type> <pose_type> "
                                  f"x_1 y_1 x_2 y_2', got {line[:80]!r}")
        try:
            x1, y1, x2, y2 = (int(v) for v in fields[3:])
        except ValueError:
            raise DataFormatError(f"{path}:{number}: box coordinates {' '.join(fields[3:])!r} "
                                  f"are not integers") from None
        if min(x1, y1) < 0 or x2 <= x1 or y2 <= y1:
            raise DataFormatError(f"{path}:{number}: box ({x1}, {y1}, {x2}, {y2}) is empty or "
                                  f"negative; expected 0 <= x_1 < x_2 and 0 <= y_1 < y_2")
        names.append(fields[0])
        lines.append(number)
        boxes[fields[0]] = (x1, y1, x2, y2)
    check_unique_names(path, names, lines)
    return boxes


def read_items(path: str | Path) -> list[str]:
    """The item ids of list_item_inshop.txt (a count line, then one id per line), in order."""
    path = open_text(path)
    with open(path, encoding="utf-8-sig") as handle:
        first = handle.readline().strip()
    try:
        declared = int(first)
    except ValueError:
        raise DataFormatError(f"{path}:1: expected the number of items, got {first[:60]!r}") from None
    items, lines = [], []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 or not line.strip():
                continue
            fields = line.split()
            if len(fields) != 1:
                raise DataFormatError(f"{path}:{number}: expected one item id, got {line.strip()[:80]!r}")
            items.append(fields[0])
            lines.append(number)
    check_count(path, declared, len(items))
    check_unique_names(path, items, lines, what="item")
    return items


def find_images_dir(root: Path) -> str:
    """The folder (relative to `root`) that holds `img/`: `Img` (the release) or the root."""
    for parent in IMAGE_PARENTS:
        if (root / parent / "img").is_dir():
            return parent
    raise DataNotFoundError(f"{root}: no image folder; expected {root / 'Img' / 'img'} (as published) "
                            f"or {root / 'img'}")


def carve_val_items(items: pd.Series, types: pd.Series, size: int | float, seed: int) -> set[str]:
    """A seeded set of whole train items (a count or a fraction of them), stratified by clothes type."""
    per_item = pd.DataFrame({"item": items, "type": types}).drop_duplicates("item")
    n = size_of(size, len(per_item), "data.val_items")
    if n == 0:
        return set()
    if n >= len(per_item):
        raise ConfigError(f"data.val_items={size!r} leaves none of the {len(per_item)} train items "
                          f"for training")
    codes = pd.factorize(per_item["type"])[0]
    _, held = stratified_split(codes, n, seed)
    return set(per_item["item"].to_numpy()[held])


def inshop_table(root: str | Path, crop: bool = False, images_dir: str | None = None,
                 val_items: int | float = 0.1, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The benchmark as an image table, and what was read (for read_report.json).

    Columns: `path`, `split` (train/val/test/gallery), `id` (image name), `source` (file:line),
    `item` (train items only), `clothes_type`, `item_id` (every image: the retrieval label) and,
    with `crop`, `box` (x_1, y_1, x_2, y_2)."""
    root = Path(root)
    partition_file = root / PARTITION
    partition = read_partition(partition_file)
    images_dir = find_images_dir(root) if images_dir is None else images_dir
    parts = [Path(name).parts for name in partition["image"]]
    short = [i for i, p in enumerate(parts) if len(p) < 5 or p[0] != "img"]
    if short:
        i = short[0]
        raise DataFormatError(f"{partition_file}:{partition['line'][i]}: image name {partition['image'][i]} "
                              f"is not img/<GENDER>/<Type>/<item_id>/<file>")
    table = pd.DataFrame({
        "path": [str(root / images_dir / name) for name in partition["image"]],
        "split": partition["status"].map(SPLIT_OF_STATUS).to_numpy(),
        "id": partition["image"].to_numpy(),
        "source": [f"{partition_file.name}:{n}" for n in partition["line"]],
        "clothes_type": [p[2] for p in parts],
        "gender": [p[1] for p in parts],
        "item_id": partition["item"].to_numpy(),
    })
    report: dict[str, Any] = {"images": len(table), "images_dir": images_dir or ".",
                              **{f"{s}_images": int((partition["status"] == s).sum()) for s in STATUSES}}
    train = table["split"] == "train"
    held_items = set(table.loc[~train, "item_id"])
    overlap = sorted(set(table.loc[train, "item_id"]) & held_items)
    if overlap:
        raise DataFormatError(f"{partition_file}: item {overlap[0]} has train images and query/gallery "
                              f"images ({len(overlap)} such item(s)); the protocol's items are disjoint")
    val = carve_val_items(table.loc[train, "item_id"], table.loc[train, "clothes_type"], val_items, seed)
    table.loc[train & table["item_id"].isin(val), "split"] = "val"
    table["item"] = table["item_id"].where(table["split"] == "train", None)
    report.update(train_items=int(table.loc[table["split"] == "train", "item_id"].nunique()),
                  val_items=len(val), query_gallery_items=len(held_items))
    items_file = root / ITEMS
    if items_file.is_file():
        listed = read_items(items_file)
        unknown = sorted(set(table["item_id"]) - set(listed))
        if unknown:
            raise DataFormatError(f"{partition_file}: {len(unknown)} item id(s) not in {items_file}, "
                                  f"e.g. {unknown[0]}")
        report["items_listed"] = len(listed)
    if crop:
        boxes = read_bboxes(root / BBOX)
        missing = [name for name in partition["image"] if name not in boxes]
        if missing:
            raise DataFormatError(f"{root / BBOX}: {len(missing)} image(s) of {partition_file.name} have "
                                  f"no box, e.g. {missing[0]} (data.crop=false reads the whole images)")
        table["box"] = [boxes[name] for name in partition["image"]]
    return table, report


class DeepFashionInShopDataModule(ImageTableDataModule):
    """DeepFashion In-shop Clothes Retrieval: tasks `item` and `clothes_type` (and `gender`),
    splits train / val (whole train items) / test (official query) / gallery (official gallery),
    and the retrieval label `item` on every image."""

    tasks_from_data = True
    extra_splits = ("gallery",)
    retrieval_label_columns: ClassVar[Mapping[str, str]] = {"item": "item_id"}

    def __init__(self, crop: bool = False, images_dir: str | None = None,
                 val_items: int | float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crop = bool(crop)
        self.images_dir = images_dir
        self.val_items = val_items

    def read_table(self) -> pd.DataFrame:
        table, self.read_report = inshop_table(self.require_root(), self.crop, self.images_dir,
                                               self.val_items, self.seed)
        return table
