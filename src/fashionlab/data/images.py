"""Robust image files: decode anything PIL reads into RGB uint8, check files cheaply before training.

`load_rgb` applies the EXIF orientation and turns grayscale (1, L, LA, I, I;16, F), palette (P, PA),
RGBA and CMYK images into HxWx3 uint8 RGB; transparent pixels are composited over white (the usual
background of product photos). Any failure — missing, truncated or corrupt file, unknown format,
decompression bomb (more pixels than `PIL.Image.MAX_IMAGE_PIXELS`) — raises `BadImageError` naming
the file.

`check_image` is the cheap build-time check: it reads the header (format, size) without decoding
the pixels, rejects bombs, and looks for the end marker of JPEG, PNG and GIF files in the file's last
bytes; only a file whose end marker is missing (truncated, or trailing bytes after the image) is
decoded in full to decide.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fashionlab.errors import BadImageError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
)
QUICK_BYTES = 4096
END_MARKERS: dict[str, bytes] = {"JPEG": b"\xff\xd9", "PNG": b"IEND", "GIF": b";"}
BACKGROUND = (255, 255, 255)


def is_image_file(path: str | Path) -> bool:
    """True when the file name has one of IMAGE_EXTENSIONS (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def _check_pixels(path: str | Path, size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit and size[0] * size[1] > limit:
        raise BadImageError(
            path, f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds the "
                  f"decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS={limit}")


@contextmanager
def _pil_errors(path: str | Path, corrupt: str) -> Iterator[None]:
    """Around PIL's opening/decoding of `path`: decompression-bomb warnings are errors, and every
    failure is a BadImageError naming the file (`corrupt` words a file PIL cannot decode)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImageError(path, f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image file PIL can identify") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(path, f"{corrupt} ({exc})") from None


def _flatten_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB from a PIL image of any mode (16-bit and float scaled to 8 bits)."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(image).astype(np.float64)
        if mode == "F":
            top = values.max() if values.size and values.max() > 1.0 else 1.0
            scaled = values / top * 255.0
        elif mode.startswith("I;16") or (values.size and values.max() > 255):
            scaled = values / 257.0
        else:
            scaled = values
        gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        image = _flatten_alpha(image)
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file into HxWx3 uint8 RGB, upright per its EXIF orientation."""
    with _pil_errors(path, "corrupt or truncated image"), Image.open(path) as image:
        _check_pixels(path, image.size)
        image.load()
        return to_rgb_array(ImageOps.exif_transpose(image))


@dataclass(frozen=True)
class FileInfo:
    """What the build-time check learnt about one file (`quick_hash`: SHA-1 of its first and last
    4 KiB plus its size, used in the data fingerprint)."""

    size: int
    width: int
    height: int
    format: str
    quick_hash: str


def check_image(path: str | Path, full: bool = False) -> FileInfo:
    """Cheap validity check of one image file (header, pixel count, end marker); `full` decodes it."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(QUICK_BYTES)
            f.seek(max(0, size - QUICK_BYTES))
            tail = f.read()
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except OSError as exc:
        raise BadImageError(path, f"cannot read file ({exc.strerror or exc})") from None
    if size == 0:
        raise BadImageError(path, "empty file")
    with _pil_errors(path, "corrupt image header"), Image.open(path) as image:
        fmt, (width, height) = image.format or "", image.size
    _check_pixels(path, (width, height))
    marker = END_MARKERS.get(fmt)
    if full or (marker is not None and marker not in tail):
        load_rgb(path)
    digest = hashlib.sha1(head + tail + str(size).encode(), usedforsecurity=False).hexdigest()
    return FileInfo(size=size, width=width, height=height, format=fmt, quick_hash=digest)


def check_images(
    paths: Sequence[str | Path], full: bool = False, workers: int | None = None,
    progress: bool = True,
) -> tuple[list[FileInfo | None], list[BadImageError | None]]:
    """`check_image` over many files in threads; per file either its FileInfo or its error."""
    workers = workers or min(8, (os.cpu_count() or 1) + 2)

    def one(path: str | Path) -> tuple[FileInfo | None, BadImageError | None]:
        try:
            return check_image(path, full), None
        except BadImageError as exc:
            return None, exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(one, paths, chunksize=64)
        if progress and len(paths) > 2000:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(paths), desc="checking images", unit="img")
        pairs = list(results)
    return [p[0] for p in pairs], [p[1] for p in pairs]
