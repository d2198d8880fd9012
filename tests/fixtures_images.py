"""Writers of small image-file datasets in their exact on-disk formats (real JPEG/PNG via PIL)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 220), (230, 200, 40), (150, 60, 200),
           (40, 200, 200), (240, 130, 30), (120, 120, 120)]


def colour_for(name: str) -> tuple[int, int, int]:
    """A stable colour per class name, so that classes are visually separable."""
    return COLOURS[zlib.crc32(name.encode()) % len(COLOURS)]


def noisy(colour: tuple[int, int, int], seed: int, size: tuple[int, int] = (24, 20)) -> np.ndarray:
    """HxWx3 uint8: a solid colour plus mild noise (size = (height, width))."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.int16) + rng.integers(-25, 25, (*size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def save_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_truncated_jpeg(path: Path, seed: int = 0) -> Path:
    """A JPEG cut to 60% of its bytes: the header is fine, the pixels are not all there."""
    save_image(path, np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def write_garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image\x00\x01\x02" * 10)
    return path


def write_tree(root: Path, counts: Mapping[str, int], ext: str = ".jpg", seed: int = 0) -> list[Path]:
    """`counts` maps a folder (relative, e.g. "shoes/female/sandals") to a number of images; each
    image is coloured by its last folder name. JPEG or PNG by `ext`, alternating sizes."""
    written = []
    for folder, n in counts.items():
        colour = colour_for(folder.rsplit("/", 1)[-1])
        for i in range(n):
            size = (24, 20) if i % 2 else (20, 28)
            written.append(save_image(root / folder / f"img{i:03d}{ext}",
                                      noisy(colour, seed + i + zlib.crc32(folder.encode()), size)))
    return written


def write_image_folder(root: Path, official_split: bool = False) -> Path:
    """class-per-folder: 3 classes (jpg and png), one corrupt file in `shirt` (no split), or
    root/train/<class>, root/test/<class> with `official_split`."""
    counts = {"shirt": 8, "shoe": 8, "bag": 8}
    if official_split:
        write_tree(root / "train", {c: 6 for c in counts})
        write_tree(root / "test", {c: 2 for c in counts}, ext=".png", seed=100)
    else:
        write_tree(root, {"shirt": 8, "shoe": 8}, ext=".jpg")
        write_tree(root, {"bag": 8}, ext=".png")
        write_garbage(root / "shirt" / "broken.jpg")
        (root / "shirt" / "notes.txt").write_text("not an image, ignored")
    return root


def write_csv_dataset(root: Path) -> Path:
    """root/labels.csv (path,category,colours,split) + root/images/*: one missing file, one
    corrupt image, multi-valued colour cells, an empty (unknown) colour cell."""
    classes = ["shirt", "shoe", "bag"]
    colours = ["red|blue", "red", "green", "", "blue|green|red"]
    lines = ["path,category,colours,split"]
    for i in range(24):
        cls = classes[i % 3]
        name = f"{cls}_{i:02d}.jpg"
        save_image(root / "images" / name, noisy(colour_for(cls), i))
        lines.append(f"{name},{cls},{colours[i % 5]},{'test' if i % 6 == 0 else 'train'}")
    lines.append("missing_99.jpg,shirt,red,train")
    write_truncated_jpeg(root / "images" / "cut_98.jpg")
    lines.append("cut_98.jpg,bag,blue,train")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def write_attributes_dataset(root: Path) -> Path:
    """root/attributes.csv: path + pattern (single), fabric and style (multi-valued), shape."""
    patterns = ["floral", "striped", "solid"]
    fabrics = ["cotton|linen", "denim", "cotton", "silk;cotton", ""]
    styles = ["casual", "formal|casual", "sporty", "casual"]
    shapes = ["a-line", "straight"]
    lines = ["path,pattern,fabric,style,shape"]
    for i in range(24):
        pattern = patterns[i % 3]
        name = f"img/{pattern}_{i:02d}.png"
        save_image(root / name, noisy(colour_for(pattern), i))
        lines.append(f"{name},{pattern},{fabrics[i % 5]},{styles[i % 4]},{shapes[i % 2]}")
    (root / "attributes.csv").write_text("\n".join(lines) + "\n")
    return root


HIERARCHY = {
    "shoes/female/sandals": 5, "shoes/male/sneakers": 5, "shoes/female/other": 3,
    "glasses/sunglasses": 5, "glasses/reading": 4,
    "trousers/male/jeans": 5, "trousers/female/jeans": 3, "bags/other": 4,
}


def write_hierarchy(root: Path) -> Path:
    """primary/[gender/]item/*.jpg after HIERARCHY ("other" under two primaries; "jeans" under
    two genders of one primary), plus a truncated JPEG."""
    write_tree(root, HIERARCHY)
    write_truncated_jpeg(root / "bags" / "other" / "cut.jpg")
    return root
