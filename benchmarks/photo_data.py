"""Photo-like full-size product photos in the Kaggle Fashion Product Images layout.

`write_kaggle_photos(root, n)` writes `root/styles.csv` (the published columns, in order) and
`root/images/<id>.jpg`: 1800x2400 JPEGs at quality 90 by default, like the full Kaggle version.
Each image is a garment-like shape (top, dress, trousers, shoe, bag or watch, by its articleType)
on a light studio background: a soft background gradient and vignette, a shadow, lighting across
the garment, a fabric pattern (stripes, checks, dots or plain weave), seams and sensor grain, so
that JPEG files have the size (~1 MB) and the decoding cost of real photos, not of flat colour.
Labels vary enough for every task of conf/data/fashion_products.yaml to have several classes.
Everything follows from `seed`. Used by tests (tests/fixtures_photos.py) and benchmarks/loader.py.

The composite is drawn at half size with vectorised NumPy and enlarged with OpenCV (bicubic), then
full-size grain from a seeded tile is added; well under 0.1 s per 1800x2400 image on one core.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
           "season", "year", "usage", "productDisplayName")
# articleType -> (masterCategory, subCategory, shape drawn)
ARTICLES: dict[str, tuple[str, str, str]] = {
    "Tshirts": ("Apparel", "Topwear", "top"),
    "Shirts": ("Apparel", "Topwear", "top"),
    "Kurtas": ("Apparel", "Topwear", "dress"),
    "Dresses": ("Apparel", "Dress", "dress"),
    "Jeans": ("Apparel", "Bottomwear", "trousers"),
    "Trousers": ("Apparel", "Bottomwear", "trousers"),
    "Casual Shoes": ("Footwear", "Shoes", "shoe"),
    "Sports Shoes": ("Footwear", "Shoes", "shoe"),
    "Handbags": ("Accessories", "Bags", "bag"),
    "Watches": ("Accessories", "Watches", "watch"),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "Black": (30, 30, 34), "White": (236, 236, 232), "Blue": (40, 80, 190), "Navy Blue": (28, 36, 90),
    "Red": (190, 30, 40), "Grey": (128, 128, 132), "Green": (40, 130, 60), "Brown": (110, 70, 40),
    "Pink": (230, 140, 170), "Yellow": (225, 200, 50),
}
GENDERS = ("Men", "Women", "Boys", "Girls", "Unisex")
SEASONS = ("Summer", "Fall", "Winter", "Spring")
USAGES = ("Casual", "Formal", "Sports", "Ethnic")
PATTERNS = ("plain", "stripes", "checks", "dots")
MANIFEST = "photos.json"
GENERATOR_VERSION = 2  # raise when the pictures change: photos_present() then rejects older folders
GRAIN_TILE = 509  # a prime side, so the tiled grain does not line up with 8x8 JPEG blocks
GRAIN_SD = 3.0


def _labels(rng: np.random.Generator, item_id: int) -> dict[str, str]:
    article = list(ARTICLES)[rng.integers(len(ARTICLES))]
    master, sub, _ = ARTICLES[article]
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    gender = GENDERS[rng.integers(len(GENDERS))]
    usage = USAGES[rng.integers(len(USAGES))]
    return {"id": str(item_id), "gender": gender, "masterCategory": master, "subCategory": sub,
            "articleType": article, "baseColour": colour, "season": SEASONS[rng.integers(len(SEASONS))],
            "year": str(2011 + int(rng.integers(7))), "usage": usage,
            "productDisplayName": f"Synthetic {gender} {colour} {usage} {article} {item_id}"}


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _box(x: np.ndarray, y: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean garment silhouette on coordinates x, y in [0, 1] (broadcast row/column vectors)."""
    j = rng.uniform(-0.03, 0.03, 4)  # per-image jitter of the proportions
    if shape == "top":
        body = _box(x, y, 0.3 + j[0], 0.22 + j[1], 0.7 - j[0], 0.85)
        sleeves = (_box(x, y, 0.12, 0.22 + j[1], 0.88, 0.42 + j[2])
                   & (np.abs(x - 0.5) + 0.6 * (y - 0.22) > 0.18))
        neck = _ellipse(x, y, 0.5, 0.22 + j[1], 0.09, 0.05)
        return (body | sleeves) & ~neck
    if shape == "dress":
        half = 0.13 + (y - 0.2) * (0.25 + j[0])
        body = (np.abs(x - 0.5) <= half) & (y >= 0.2 + j[1]) & (y <= 0.92)
        return body & ~_ellipse(x, y, 0.5, 0.2 + j[1], 0.07, 0.04)
    if shape == "trousers":
        waist = _box(x, y, 0.3 + j[0], 0.12, 0.7 - j[0], 0.3)
        legs = (_box(x, y, 0.3 + j[0], 0.12, 0.49, 0.93 + j[2])
                | _box(x, y, 0.51, 0.12, 0.7 - j[0], 0.93 + j[3]))
        return waist | legs
    if shape == "shoe":
        sole = _ellipse(x, y, 0.5, 0.62, 0.38 + j[0], 0.1)
        upper = _ellipse(x, y, 0.42 + j[1], 0.52, 0.27, 0.16) & (y <= 0.62)
        return sole | upper
    if shape == "bag":
        body = _box(x, y, 0.22, 0.38 + j[0], 0.78, 0.85)
        handle = _ellipse(x, y, 0.5, 0.38 + j[0], 0.2, 0.17) & ~_ellipse(x, y, 0.5, 0.38 + j[0], 0.16, 0.13)
        return body | (handle & (y <= 0.38 + j[0]))
    strap = _box(x, y, 0.43, 0.1, 0.57, 0.9)  # watch
    return strap | _ellipse(x, y, 0.5, 0.5 + j[0], 0.2, 0.15)


def _wave(x: np.ndarray, y: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """sin(2 pi (fx x + fy y)) over the grid of row vector x and column vector y, from 1-D sines
    and cosines (sin(a + b) = sin a cos b + cos a sin b): 2-D work is one multiply-add."""
    ax, by = 2 * np.pi * fx * x, 2 * np.pi * fy * y
    return np.sin(ax) * np.cos(by) + np.cos(ax) * np.sin(by)


def _pattern(kind: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, px: float) -> np.ndarray:
    """Fabric texture in about [-1, 1] (float32); `px` is one pixel in the unit coordinates."""
    frequency = 1.0 / (rng.uniform(18, 60) * px)
    angle = rng.uniform(0, np.pi)
    cos, sin = float(np.cos(angle)), float(np.sin(angle))  # Python floats: the arrays stay float32
    fine = 2 * np.pi / (3 * px)
    weave = (0.25 * np.sin(fine * x)) * np.sin(fine * y)  # separable: one 2-D multiply
    along = _wave(x, y, frequency * cos, frequency * sin)
    if kind == "stripes":
        return np.clip(3 * along, -0.8, 0.8) + weave
    if kind == "checks":
        across = _wave(x, y, -frequency * sin, frequency * cos)
        return 0.5 * np.sign(along * across) + weave
    if kind == "dots":
        across = _wave(x, y, -frequency * sin, frequency * cos)
        return np.where((along > 0.8) & (across > 0.8), 0.9, -0.1).astype(np.float32) + weave
    return weave + 0.15 * along


def photo(rng: np.random.Generator, labels: dict[str, str], size: tuple[int, int],
          grain: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One HxWx3 uint8 photo (size = (width, height)) of the item `labels` describe."""
    width, height = size
    w2, h2 = max(1, width // 2), max(1, height // 2)
    x = (np.arange(w2, dtype=np.float32) / w2)[None, :]
    y = (np.arange(h2, dtype=np.float32) / h2)[:, None]
    shape = ARTICLES[labels["articleType"]][2]
    # Studio background: light, a vertical gradient, a vignette, a soft shadow below-right.
    mask = _shape_mask(shape, x, y, rng)
    shadow = _shape_mask(shape, x - 0.02, y - 0.015, rng) & ~mask
    grey = rng.uniform(228, 246) - 14 * y - 30 * ((x - 0.5) ** 2 + (y - 0.5) ** 2)
    grey = np.where(shadow, grey - 28, grey)
    # Garment: its colour, lit from the top left, with a fabric pattern and seams.
    colour = np.array(COLOURS[labels["baseColour"]], dtype=np.float32)
    second = (rng.uniform(0.35, 0.9) * (255 - colour) if colour.mean() < 128
              else -rng.uniform(0.3, 0.7) * colour).astype(np.float32)
    light = 1.12 - 0.35 * (0.6 * x + 0.4 * y)
    texture = 0.3 * _pattern(PATTERNS[rng.integers(len(PATTERNS))], x, y, rng, 1.0 / w2)
    seams = (np.abs(np.sin(2 * np.pi * y * rng.uniform(3, 7))) < 0.015) | (np.abs(x - 0.5) < 0.6 / w2)
    seams = np.float32(35) * seams  # darker stitching lines
    tint = rng.uniform(-6, 6, 3).astype(np.float32)
    image = np.empty((h2, w2, 3), dtype=np.uint8)
    for c in range(3):  # channel by channel: 2-D float work only
        garment = colour[c] * light + texture * second[c] - seams
        image[..., c] = np.clip(np.where(mask, garment, grey + tint[c]), 0, 255)
    full = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    # Sensor grain at full size: the seeded grain (+ and -), shifted per image; saturating adds.
    dy, dx = (int(v) for v in rng.integers(GRAIN_TILE, size=2))
    up, down = (g[dy:dy + height, dx:dx + width] for g in grain)
    return cv2.subtract(cv2.add(full, up), down)


def grain(seed: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Seeded grain (normal noise, sd GRAIN_SD grey levels, a GRAIN_TILE-square tile repeated) for
    images of `size` shifted by up to GRAIN_TILE pixels, as its positive and negative parts (uint8,
    for saturating adds)."""
    rng = np.random.default_rng([seed, 1 << 30])
    tile = np.rint(rng.normal(0, GRAIN_SD, (GRAIN_TILE, GRAIN_TILE, 3)))
    reps = (-(-size[1] // GRAIN_TILE) + 1, -(-size[0] // GRAIN_TILE) + 1, 1)
    noise = np.tile(tile, reps)
    return (np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8))


def write_kaggle_photos(root: str | Path, n: int, size: tuple[int, int] = (1800, 2400),
                        quality: int = 90, seed: int = 0) -> Path:
    """Write `n` photos (size = (width, height)) and their styles.csv under `root`; returns root.
    `root/photos.json` records the parameters (see `photos_present`)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    noise = grain(seed, size)
    rows = []
    for i in range(int(n)):
        rng = np.random.default_rng([seed, i])
        labels = _labels(rng, 10000 + i)
        Image.fromarray(photo(rng, labels, size, noise)).save(
            root / "images" / f"{labels['id']}.jpg", quality=quality)
        rows.append(labels)
    with open(root / "styles.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (root / MANIFEST).write_text(json.dumps(_params(n, size, quality, seed)) + "\n")
    return root


def _params(n: int, size: tuple[int, int], quality: int, seed: int) -> dict:
    return {"n": int(n), "size": [int(size[0]), int(size[1])], "quality": int(quality), "seed": int(seed),
            "generator": GENERATOR_VERSION}


def photos_present(root: str | Path, n: int, size: tuple[int, int] = (1800, 2400), quality: int = 90,
                   seed: int = 0) -> bool:
    """True when `root` holds exactly what `write_kaggle_photos` with these arguments writes."""
    root = Path(root)
    try:
        if json.loads((root / MANIFEST).read_text()) != _params(n, size, quality, seed):
            return False
    except (OSError, ValueError):
        return False
    return all((root / "images" / f"{10000 + i}.jpg").is_file() for i in range(int(n)))


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1800x2400") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"{text}: each side must be at least 16 pixels")
    return width, height


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/photo_data.py",
        description="Write photo-like product JPEGs in the Kaggle Fashion Product Images layout "
        "(OUT/styles.csv, OUT/images/<id>.jpg; train with data=fashion_products data.root=OUT), "
        "or with --class-folders one folder per articleType (data=image_folder data.root=OUT).")
    parser.add_argument("out", help="folder to write into (created)")
    parser.add_argument("-n", type=int, default=100, help="number of photos (default 100)")
    parser.add_argument("--size", type=_size, default=(1800, 2400), metavar="WIDTHxHEIGHT",
                        help="image size (default 1800x2400, the full Kaggle version's)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-folders", action="store_true",
                        help="OUT/<articleType>/<id>.jpg instead of the Kaggle layout")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"-n {args.n}: at least one photo")
    out = Path(args.out)
    if args.class_folders:
        written = write_class_folders(out, args.n, args.size, args.quality, args.seed)
    else:
        write_kaggle_photos(out, args.n, args.size, args.quality, args.seed)
        written = args.n
    print(f"{written} photos ({args.size[0]}x{args.size[1]}, quality {args.quality}) -> {out}")


def write_class_folders(root: str | Path, n: int, size: tuple[int, int] = (1800, 2400),
                        quality: int = 90, seed: int = 0) -> int:
    """The same photos as `write_kaggle_photos`, as `root/<articleType>/<id>.jpg` (the layout of
    `data=image_folder`); returns the number written."""
    root = Path(root)
    noise = grain(seed, size)
    for i in range(int(n)):
        rng = np.random.default_rng([seed, i])
        labels = _labels(rng, 10000 + i)
        folder = root / labels["articleType"].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(rng, labels, size, noise)).save(folder / f"{labels['id']}.jpg", quality=quality)
    return int(n)


if __name__ == "__main__":
    main()
