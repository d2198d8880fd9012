"""A tiny DeepFashion In-shop Clothes Retrieval copy in the published format: list files with a
count line and a header, image names padded with runs of spaces, zero-padded box coordinates,
and real JPEGs under Img/img/<GENDER>/<Type>/<item_id>/<nn>_<k>_<view>.jpg."""

from __future__ import annotations

from pathlib import Path

from fixtures_readers import write_jpeg

#: (gender, clothes type, item id, status of its 3 images). Train: two items of each of two
#: types (so that a val carve of whole items can keep both types); query/gallery: three other
#: items, image 1 a query, images 2 and 3 in the gallery.
ITEMS = [
    ("WOMEN", "Dresses", "id_00000002", "train"),
    ("WOMEN", "Dresses", "id_00000004", "train"),
    ("MEN", "Denim", "id_00000001", "train"),
    ("MEN", "Denim", "id_00000003", "train"),
    ("WOMEN", "Dresses", "id_00000005", "held"),
    ("MEN", "Denim", "id_00000006", "held"),
    ("WOMEN", "Dresses", "id_00000007", "held"),
]
VIEWS = ["1_front", "2_side", "3_back"]
#: Pixel size of the fixture's images and the box every image gets: (x_1, y_1, x_2, y_2).
SIZE = 24
BOX = (2, 3, 20, 22)
NAME_WIDTH = 71  # the published files pad image names to a fixed column


def image_names() -> list[tuple[str, str, str]]:
    """(image name, item id, evaluation status) in file order."""
    rows = []
    for n, (gender, kind, item, status) in enumerate(ITEMS, start=1):
        for k, view in enumerate(VIEWS):
            name = f"img/{gender}/{kind}/{item}/{n:02d}_{view}.jpg"
            row_status = status if status == "train" else ("query" if k == 0 else "gallery")
            rows.append((name, item, row_status))
    return rows


def partition_lines(rows: list[tuple[str, str, str]]) -> list[str]:
    return [str(len(rows)), "image_name item_id evaluation_status",
            *[f"{name:<{NAME_WIDTH}}{item} {status:<10}" for name, item, status in rows]]


def bbox_lines(rows: list[tuple[str, str, str]]) -> list[str]:
    x1, y1, x2, y2 = BOX
    return [str(len(rows)), "image_name  clothes_type  pose_type  x_1  y_1  x_2  y_2",
            *[f"{name:<{NAME_WIDTH}}{3 if 'Dresses' in name else 2}  1  "
              f"{x1:03d}  {y1:03d}  {x2:03d}  {y2:03d}" for name, _, _ in rows]]


def item_lines() -> list[str]:
    items = sorted(item for _, _, item, _ in ITEMS)
    return [str(len(items)), *items]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_inshop(root: Path, images_parent: str = "Img") -> dict:
    """The benchmark under `root` (images in `root/<images_parent>/img`; "" for `root/img`).
    Returns facts for the tests."""
    rows = image_names()
    write_lines(root / "Eval" / "list_eval_partition.txt", partition_lines(rows))
    write_lines(root / "Anno" / "list_bbox_inshop.txt", bbox_lines(rows))
    write_lines(root / "Anno" / "list_item_inshop.txt", item_lines())
    item_index = {item: i for i, (_, _, item, _) in enumerate(ITEMS)}
    for seed, (name, item, _) in enumerate(rows):
        write_jpeg(root / images_parent / name, item_index[item], seed=seed, size=SIZE)
    return {"rows": rows, "train": sum(s == "train" for _, _, s in rows),
            "query": sum(s == "query" for _, _, s in rows),
            "gallery": sum(s == "gallery" for _, _, s in rows)}
