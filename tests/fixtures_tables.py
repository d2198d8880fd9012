"""Byte-stable datasets for pinning data fingerprints: the reader fixtures with every readable image
rewritten as an uncompressed BMP (no codec version in the bytes), and image tables of BMP files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fashionlab.data.image_table import ImageTableDataModule


def write_bmp(path: Path, pixels: np.ndarray) -> Path:
    """A 24-bit BMP written byte by byte (bottom-up rows, BGR, rows padded to 4 bytes)."""
    height, width, _ = pixels.shape
    row = width * 3
    pad = (4 - row % 4) % 4
    body = b"".join(pixels[y, :, ::-1].astype(np.uint8).tobytes() + b"\0" * pad
                    for y in range(height - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(body), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(body), 2835, 2835, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + info + body)
    return path


def pixels_for(name: str, size: int = 12) -> np.ndarray:
    """Deterministic pixels from a name (no random generator whose stream could change)."""
    seed = zlib.crc32(name.encode())
    values = (np.arange(size * size * 3, dtype=np.int64) * 2654435761 + seed) % 251
    return values.reshape(size, size, 3).astype(np.uint8)


def to_bmp_bytes(root: Path) -> None:
    """Rewrite every readable image under `root` as a BMP (same name); corrupt files are kept."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() not in (".jpg", ".png"):
            continue
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:
            continue
        write_bmp(path, pixels_for(path.relative_to(root).as_posix()))


def bmp_table(root: Path, counts: dict[str, int]) -> pd.DataFrame:
    """root/<class>_<i>.bmp, one row each (columns path, article, source)."""
    rows = []
    for cls, n in counts.items():
        for i in range(n):
            name = f"{cls}_{i}.bmp"
            write_bmp(root / name, pixels_for(name))
            rows.append({"path": name, "article": cls, "source": f"list.csv:{len(rows) + 2}"})
    return pd.DataFrame(rows)


class ListTable(ImageTableDataModule):
    """The base with a table given in advance (what a reader's read_table would return)."""

    def __init__(self, table: pd.DataFrame, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def read_table(self) -> pd.DataFrame:
        return self.table.copy()


def list_table(root: Path, table: pd.DataFrame, transforms: dict, tasks=None, **kwargs) -> ListTable:
    """A ListTable over `table` (default task: article, classes found), 16 px, batches of 4, seed 0."""
    tasks = tasks or {"article": {"kind": "multiclass", "classes": "auto"}}
    return ListTable(table, root=str(root), tasks=tasks, transforms=transforms, image_size=16,
                     batch_size=4, seed=kwargs.pop("seed", 0), **kwargs)
