"""Writers of tiny copies of the published datasets, byte-for-byte in their on-disk formats:
Kaggle Fashion Product Images (styles.csv, unquoted), DeepFashion Category and Attribute
Prediction (count line + header list files, 1-based labels, names with spaces) and CelebA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30), (200, 30, 200),
           (30, 200, 210), (120, 120, 120), (250, 140, 20), (90, 40, 10), (240, 240, 240)]


def write_jpeg(path: Path, colour_index: int, seed: int, size: int = 16) -> None:
    """A small JPEG whose dominant colour encodes the class, plus noise."""
    rng = np.random.default_rng(seed)
    pixels = np.full((size, size, 3), PALETTE[colour_index % len(PALETTE)], dtype=np.int16)
    pixels += rng.integers(-25, 25, size=pixels.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)


def write_corrupt_jpeg(path: Path) -> None:
    """A file named .jpg holding the first bytes of a JPEG only (as left by a broken download)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00garbage")


# --- Kaggle Fashion Product Images -------------------------------------------------------------

PRODUCT_HEADER = ("id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,"
                  "productDisplayName")
PRODUCT_KINDS = [  # masterCategory, subCategory, articleType
    ("Apparel", "Topwear", "Tshirts"),
    ("Apparel", "Bottomwear", "Jeans"),
    ("Accessories", "Watches", "Watches"),
    ("Footwear", "Shoes", "Casual Shoes"),
]
GENDERS = ["Men", "Women"]
COLOURS = ["Navy Blue", "Black", "White"]
SEASONS = ["Summer", "Fall", "Winter"]
# Rows copied in the real file's style whose productDisplayName holds commas (11 and 12 fields).
PRODUCT_MALFORMED = [
    "39403,Women,Accessories,Watches,Watches,Black,Winter,2016,Casual,Lino Perros Women, Brown Watch",
    "39404,Men,Footwear,Shoes,Casual Shoes,Navy Blue,Summer,2012,Casual,Puma Men, Black, Sneakers",
]
PRODUCT_MISSING_IMAGE_ID = 39405
PRODUCT_CORRUPT_ID = 39406
PRODUCT_RARE_ID = 39407  # masterCategory "Free Items": one row only


def write_fashion_products(root: Path, layout: str = "myntradataset", n: int = 40) -> dict:
    """styles.csv + images/<id>.jpg under root/layout ("" for the full version's flat layout).

    Rows: `n` regular ones (four article kinds in turn; empty baseColour/season/usage/year on
    some), two malformed ones with commas in the name, one id without image, one corrupt image,
    one rare masterCategory. Returns the expected facts for the tests.
    """
    folder = root / layout if layout else root
    images = folder / "images"
    lines = [PRODUCT_HEADER]
    expected: dict = {"master": {}, "empty_colour": 0, "empty_season": 0, "empty_usage": 0}
    for i in range(n):
        master, sub, article = PRODUCT_KINDS[i % len(PRODUCT_KINDS)]
        colour = "" if i % 13 == 5 else COLOURS[i % 3]
        season = "" if i % 11 == 4 else SEASONS[i % 3]
        usage = "" if i % 17 == 3 else "Casual"
        year = "" if i % 19 == 7 else str(2011 + i % 6)
        pid = 10000 + i
        lines.append(f"{pid},{GENDERS[i % 2]},{master},{sub},{article},{colour},{season},{year},{usage},"
                     f"Brand {i} {GENDERS[i % 2]} {article}")
        write_jpeg(images / f"{pid}.jpg", i % len(PRODUCT_KINDS), seed=pid)
        expected["master"][master] = expected["master"].get(master, 0) + 1
        expected["empty_colour"] += colour == ""
        expected["empty_season"] += season == ""
        expected["empty_usage"] += usage == ""
    lines += PRODUCT_MALFORMED
    for line in PRODUCT_MALFORMED:
        pid = int(line.split(",")[0])
        write_jpeg(images / f"{pid}.jpg", 2, seed=pid)
    expected["master"]["Accessories"] += 1
    expected["master"]["Footwear"] += 1
    lines.append(f"{PRODUCT_MISSING_IMAGE_ID},Men,Apparel,Topwear,Tshirts,Black,Summer,2012,Casual,"
                 "No Image Tee")
    lines.append(f"{PRODUCT_CORRUPT_ID},Women,Apparel,Topwear,Tshirts,White,Summer,2012,Casual,Broken Tee")
    write_corrupt_jpeg(images / f"{PRODUCT_CORRUPT_ID}.jpg")
    expected["master"]["Apparel"] += 1  # the corrupt one has a file; the missing one does not
    lines.append(f"{PRODUCT_RARE_ID},Unisex,Free Items,Free Gifts,Free Gifts,Black,Summer,2012,Casual,"
                 "Gift Bag")
    write_jpeg(images / f"{PRODUCT_RARE_ID}.jpg", 5, seed=PRODUCT_RARE_ID)
    expected["master"]["Free Items"] = 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "styles.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected["rows"] = len(lines) - 1
    expected["malformed_lines"] = [n + 2, n + 3]
    return expected


# --- DeepFashion Category and Attribute Prediction ---------------------------------------------

# (name, type) as in list_category_cloth.txt: 1 upper, 2 lower, 3 full body.
DF_CATEGORIES = [("Anorak", 1), ("Blazer", 1), ("Blouse", 1), ("Button-Down", 1), ("Jeans", 2),
                 ("Shorts", 2), ("Dress", 3), ("Jumpsuit", 3)]
# (name, type) as in list_attr_cloth.txt: 1 texture, 2 fabric, 3 shape, 4 part, 5 style.
DF_ATTRIBUTES = [("a-line", 3), ("abstract chevron", 1), ("floral", 1), ("denim", 2),
                 ("faux leather", 2), ("fit", 3), ("v-neck", 4), ("zip up", 4), ("boho", 5), ("summer", 5)]
# images per category label (1-based), in category order
DF_COUNTS = [6, 0, 9, 2, 8, 3, 10, 4]


def _padded(name: str, value: str, width: int = 29) -> str:
    return name + " " * max(width - len(name), 1) + value


def df_image_name(category: str, k: int) -> str:
    return f"img/Sheer_{category}_Top/img_{k:08d}.jpg"


def write_deepfashion(root: Path, zero_values: bool = False) -> dict:
    """Anno/*.txt, Eval/list_eval_partition.txt and img/ in the benchmark's formats."""
    anno, evaluation = root / "Anno", root / "Eval"
    anno.mkdir(parents=True, exist_ok=True)
    evaluation.mkdir(parents=True, exist_ok=True)
    lines = [str(len(DF_CATEGORIES)), "category_name  category_type"]
    lines += [_padded(n, str(t)) for n, t in DF_CATEGORIES]
    (anno / "list_category_cloth.txt").write_text("\n".join(lines) + "\n")
    lines = [str(len(DF_ATTRIBUTES)), "attribute_name  attribute_type"]
    lines += [_padded(n, str(t)) for n, t in DF_ATTRIBUTES]
    (anno / "list_attr_cloth.txt").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(0)
    cat_rows, attr_rows, part_rows, expected = [], [], [], {"images": [], "labels": {}, "attrs": {}}
    k = 1
    for label, (category, _) in enumerate(DF_CATEGORIES, start=1):
        for j in range(DF_COUNTS[label - 1]):
            name = df_image_name(category, k)
            k += 1
            cat_rows.append(_padded(name, str(label), 71))
            values = rng.choice([-1, 1], size=len(DF_ATTRIBUTES), p=[0.7, 0.3])
            values[label % len(DF_ATTRIBUTES)] = 1
            if zero_values:
                values[(label + 1) % len(DF_ATTRIBUTES)] = 0
            attr_rows.append(_padded(name, "", 71) + " ".join(f"{v:2d}" for v in values))
            split = "train" if j % 4 < 2 else ("val" if j % 4 == 2 else "test")
            part_rows.append(_padded(name, split, 71))
            write_jpeg(root / name, label, seed=k)
            expected["images"].append(name)
            expected["labels"][name] = category
            expected["attrs"][name] = [a for (a, _), v in zip(DF_ATTRIBUTES, values, strict=True) if v == 1]
    n = len(cat_rows)
    (anno / "list_category_img.txt").write_text(
        "\n".join([str(n), "image_name  category_label", *cat_rows]) + "\n")
    (anno / "list_attr_img.txt").write_text(
        "\n".join([str(n), "image_name  attribute_labels", *attr_rows]) + "\n")
    (evaluation / "list_eval_partition.txt").write_text(
        "\n".join([str(n), "image_name  evaluation_status", *part_rows]) + "\n")
    return expected


# --- CelebA -------------------------------------------------------------------------------------

# Line 2 of list_attr_celeba.txt, as published (with its trailing space).
CELEBA_HEADER = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
    "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
    "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
    "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young "
)
CELEBA_ATTRIBUTES = CELEBA_HEADER.split()


def write_celeba(root: Path, n: int = 60) -> dict:
    """list_attr_celeba.txt, list_eval_partition.txt and img_align_celeba/ as published.

    Row i wears a necktie when i % 3 == 0, eyeglasses when i % 3 == 1 and a hat when i % 4 == 2
    (so some rows have two of them); other attributes are random."""
    rng = np.random.default_rng(1)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    index = {a: j for j, a in enumerate(CELEBA_ATTRIBUTES)}
    rows, parts, values_of = [], [], {}
    for i, name in enumerate(names):
        values = rng.choice([-1, 1], size=40)
        for attr in ("Wearing_Necktie", "Eyeglasses", "Wearing_Hat", "Heavy_Makeup"):
            values[index[attr]] = -1
        if i % 3 == 0:
            values[index["Wearing_Necktie"]] = 1
        elif i % 3 == 1:
            values[index["Eyeglasses"]] = 1
        if i % 4 == 2:
            values[index["Wearing_Hat"]] = 1
        values_of[name] = values
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
        parts.append(f"{name} {0 if i % 5 < 3 else (1 if i % 5 == 3 else 2)}")
        write_jpeg(root / "img_align_celeba" / name, i % 3, seed=i, size=20)
    (root / "list_attr_celeba.txt").write_text(
        "\n".join([str(n), CELEBA_HEADER, *rows]) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return {"names": names, "values": values_of, "index": index}
