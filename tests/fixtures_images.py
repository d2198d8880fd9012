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
