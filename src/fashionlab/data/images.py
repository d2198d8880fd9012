"""Robust image files: decode photos into RGB uint8, check files cheaply before training.

Only the formats photos come in are opened (ACCEPTED_FORMATS: JPEG, PNG, WebP, BMP, GIF, TIFF),
whatever the file's name says: an EPS, PSD or ICO file is "not an image file of an accepted
format", never handed to its decoder (EPS would go to Ghostscript).

`load_rgb` applies the EXIF orientation and turns grayscale (1, L, LA, I, I;16, F), palette (P, PA),
RGBA and CMYK images into HxWx3 uint8 RGB; transparent pixels are composited over white (the usual
background of product photos). High bit depths are scaled by fixed rules, never by the image's own
content: 16-bit (I;16) and 32-bit integer (I) values are 16-bit intensities, 0..65535 -> 0..255
(rounded; I clipped to that range first); 32-bit float (F) values are intensities in [0, 1]
(clipped; NaN is black). The pixel count is checked after reading the header and before decoding
(`max_pixels`, default PIL's `Image.MAX_IMAGE_PIXELS`). Any failure — missing, truncated or corrupt
file, refused format, too many pixels — raises `BadImageError` naming the file.

`min_side` decodes a JPEG at reduced size: libjpeg's DCT scaling (PIL's `Image.draft`) decodes at
1/1, 1/2, 1/4 or 1/8 of the stored size, and the smallest scale whose shorter side is still
>= `min_side` is taken (PIL's rule: the denominator is the largest power of two <= short side //
min_side, at most 8). A 1800x2400 photo for a 224 px model at margin 1.5 (min_side 336) decodes at
1/4, 450x600, several times faster than in full; other formats are decoded in full.

`check_image` is the cheap build-time check: it reads the header (format, size) without decoding
the pixels, rejects bombs, checks that JPEG, PNG and GIF files end with their end marker and that
BMP and TIFF files hold the bytes their header declares (pixel rows; strips or tiles); a file that
ends otherwise (trailing bytes after the image) or whose layout it cannot tell is decoded in full to
decide.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from fashionlab.errors import BadImageError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
)
# PIL format ids opened at all (JPEG includes the MPO files of cameras).
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
QUICK_BYTES = 4096
# The last bytes of a whole file: JPEG's EOI, PNG's IEND chunk with its CRC, and GIF's last block
# terminator followed by the trailer 0x3B.
END_MARKERS: dict[str, bytes] = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82", "GIF": b"\x00;"}
BACKGROUND = (255, 255, 255)
BAND_PIXELS = 1 << 20  # high-bit-depth images are scaled to 8 bits this many pixels at a time


def is_image_file(path: str | Path) -> bool:
    """True when the file name has one of IMAGE_EXTENSIONS (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


class TooManyPixelsError(BadImageError):
    """An image has more pixels than the caller's limit (checked before decoding)."""

    def __init__(self, path: object, size: tuple[int, int], limit: int) -> None:
        super().__init__(path, f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds the limit "
                               f"of {limit} pixels")
        self.size, self.limit = size, limit


def _check_pixels(path: str | Path, size: tuple[int, int], max_pixels: int | None = None) -> None:
    if max_pixels and size[0] * size[1] > max_pixels:
        raise TooManyPixelsError(path, size, max_pixels)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and size[0] * size[1] > limit:
        raise BadImageError(
            path, f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels exceeds the "
                  f"decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS={limit}")


def open_image(path: str | Path) -> Image.Image:
    """PIL's lazy open (header only), restricted to ACCEPTED_FORMATS."""
    return Image.open(path, formats=ACCEPTED_FORMATS)


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
        raise BadImageError(path, "not an image file of an accepted format "
                                  f"({', '.join(ACCEPTED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(path, f"{corrupt} ({exc})") from None


def _flatten_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """8-bit gray of one band of I, I;16 or F pixels, by the fixed rules of the module docstring."""
    if values.dtype.kind == "f":
        unit = np.nan_to_num(values.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    wide = np.clip(values, 0, 65535).astype(np.uint32)
    return ((wide + 128) // 257).astype(np.uint8)  # = round(v / 257), exact in integers


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB from a PIL image of any mode (16-bit, 32-bit and float scaled to 8 bits)."""
    mode = image.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        width, height = image.size
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        rows = max(1, BAND_PIXELS // max(1, width))
        for top in range(0, height, rows):  # band by band: no full-size wide copies
            bottom = min(height, top + rows)
            rgb[top:bottom] = _to_uint8(np.asarray(image.crop((0, top, width, bottom))))[:, :, None]
        return rgb
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        image = _flatten_alpha(image)
    elif mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


#: libjpeg's DCT scale denominators (decoding at 1/1, 1/2, 1/4, 1/8 of the stored size).
DCT_SCALES: tuple[int, ...] = (1, 2, 4, 8)
EXIF_ORIENTATION = 0x0112


def dct_scale(size: tuple[int, int], min_side: int | None) -> int:
    """The DCT denominator `load_rgb` decodes a JPEG of `size` at for `min_side` (PIL's draft rule:
    the largest of DCT_SCALES that is <= short side // min_side; 1 when min_side is None)."""
    if not min_side:
        return 1
    most = min(size) // int(min_side)
    return max(s for s in DCT_SCALES if s <= most) if most >= 1 else 1


def _decode(path: str | Path, max_pixels: int | None, min_side: int | None,
            region: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, int]:
    """(HxWx3 uint8 RGB, the DCT denominator it was decoded at). With `region` (a box in the
    full-size upright image), `min_side` applies to the region's shorter side, not the image's."""
    with _pil_errors(path, "corrupt or truncated image"), open_image(path) as image:
        _check_pixels(path, image.size, max_pixels)
        scale = 1
        if min_side and isinstance(image, JpegImagePlugin.JpegImageFile):
            need = int(min_side)
            if region is not None:  # the region's short side >= min_side <=> the image's >= this
                need = math.ceil(need * min(image.size) / _region_short_side(image, region))
            if dct_scale(image.size, need) > 1:
                full_short = min(image.size)
                image.draft(image.mode, (need, need))  # PIL picks dct_scale(size, need)
                scale = round(full_short / min(image.size))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb_array(image), scale


def _region_short_side(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """The shorter side of `box` (upright coordinates) clipped to the opened image."""
    width, height = image.size
    if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # stored rotated by 90 degrees
        width, height = height, width
    x1, y1, x2, y2 = box
    return max(1, min(min(x2, width) - max(x1, 0), min(y2, height) - max(y1, 0)))


def load_rgb(path: str | Path, max_pixels: int | None = None,
             min_side: int | None = None) -> np.ndarray:
    """Decode an image file into HxWx3 uint8 RGB, upright per its EXIF orientation; more than
    `max_pixels` pixels (or PIL's MAX_IMAGE_PIXELS) is refused before decoding. `min_side`: a
    JPEG is decoded at the smallest DCT scale whose shorter side is still >= min_side (None: full)."""
    return _decode(path, max_pixels, min_side)[0]


def load_rgb_region(path: str | Path, box: tuple[int, int, int, int], max_pixels: int | None = None,
                    min_side: int | None = None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """`load_rgb` for a region `box` (x_1, y_1, x_2, y_2 in the full-size upright image) that is
    cropped afterwards: `min_side` applies to the box's shorter side. Returns the decoded image and
    the box in its pixel coordinates (divided by the DCT scale)."""
    image, scale = _decode(path, max_pixels, min_side, region=box)
    if scale == 1:
        return image, box
    x1, y1, x2, y2 = box
    return image, (x1 // scale, y1 // scale, -(-x2 // scale), -(-y2 // scale))


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
    with _pil_errors(path, "corrupt image header"), open_image(path) as image:
        fmt, (width, height) = image.format or "", image.size
        declared = declared_bytes(image)
    _check_pixels(path, (width, height))
    if declared is not None and declared > size:
        raise BadImageError(path, f"truncated: its {fmt} header declares {declared} bytes, "
                                  f"the file has {size}")
    marker = END_MARKERS.get(fmt)
    undecided = fmt in ("BMP", "TIFF") and declared is None
    if full or undecided or (marker is not None and not tail.endswith(marker)):
        load_rgb(path)
    digest = hashlib.sha1(head + tail + str(size).encode(), usedforsecurity=False).hexdigest()
    return FileInfo(size=size, width=width, height=height, format=fmt, quick_hash=digest)


def declared_bytes(image: Image.Image) -> int | None:
    """The file size an opened BMP or TIFF needs by its header: the end of its uncompressed pixel
    rows (BMP) or of its last strip or tile (TIFF, first frame); None when unknown."""
    if image.format == "BMP" and len(image.tile) == 1 and image.tile[0][0] == "raw":
        _, _, offset, args = image.tile[0]
        return offset + int(args[1]) * image.size[1]  # args: (rawmode, padded row stride, direction)
    if image.format == "TIFF":
        tags = image.tag_v2
        for offsets_tag, counts_tag in ((273, 279), (324, 325)):  # strips, tiles
            offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
            if offsets is not None and counts is not None:
                offsets = offsets if isinstance(offsets, tuple) else (offsets,)
                counts = counts if isinstance(counts, tuple) else (counts,)
                if not counts or len(offsets) != len(counts):
                    return None
                return max(int(o) + int(c) for o, c in zip(offsets, counts, strict=True))
    return None


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
