"""Image grids with a caption under each tile (results of similar, profile and wardrobe)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CAPTION_HEIGHT = 28


def _tile(image: np.ndarray, size: int) -> Image.Image:
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    picture.thumbnail(
        (size, size), Image.Resampling.LANCZOS if max(picture.size) > size else Image.Resampling.NEAREST
    )
    if max(picture.size) < size:
        scale = size / max(picture.size)
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
            Image.Resampling.NEAREST,
        )
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(picture, ((size - picture.width) // 2, (size - picture.height) // 2))
    return canvas


def image_grid(
    images: Sequence[np.ndarray],
    captions: Sequence[str] | None = None,
    tile_size: int = 112,
    columns: int = 0,
    title: str | None = None,
) -> Image.Image:
    """Tiles of `tile_size` pixels, `columns` per row (0: about square), each with up to two
    caption lines (split on newlines) under it, and an optional title line above."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    captions = list(captions) if captions is not None else [""] * n
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    font = ImageFont.load_default()
    top = 20 if title else 0
    cell_h = tile_size + CAPTION_HEIGHT
    grid = Image.new("RGB", (columns * tile_size, top + rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((4, 4), title, fill="black", font=font)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * tile_size, top + (i // columns) * cell_h
        grid.paste(_tile(image, tile_size), (x, y))
        for line_no, line in enumerate(str(caption).split("\n")[:2]):
            draw.text(
                (x + 3, y + tile_size + 2 + 12 * line_no),
                _fit(draw, line, font, tile_size - 6),
                fill="black",
                font=font,
            )
    return grid


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def save_grid(images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path, **kwargs) -> Path:
    """`image_grid` written to `path` (PNG or JPEG by suffix); parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, captions, **kwargs).save(path)
    return path
