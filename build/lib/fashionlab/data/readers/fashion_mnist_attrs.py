"""Fashion-MNIST with colour and pattern: the real garments, each tinted with a named palette
colour and overlaid with a pattern (solid, striped, checked, dotted), deterministic from a seed.

The embedded multi-attribute dataset (tasks `article`, `category`, `colour`, `pattern`): it needs
only the Fashion-MNIST files, so recommendation demos and tests run without a downloaded catalogue.

Rendering, per image, at the native 28x28: the garment's grey level (0..1) is the mask, so the
background stays black and colour and pattern appear on the garment only. Pixel = mask x colour,
darkened to (1 - pattern_strength) on the pattern's "ink" pixels. Colour and pattern are assigned
per official split, stratified by article (see `assign_attributes`), before the train/val split,
so an image keeps its attributes whatever the training `seed`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab.data.readers.fashion_mnist import (
    CLASSES,
    FashionMNISTDataModule,
    read_fashion_mnist_split,
)
from fashionlab.errors import ConfigError

PATTERNS: tuple[str, ...] = ("solid", "striped", "checked", "dotted")
# Smallest pattern period (pixels at 28x28): 2 px on / 2 px off still survives a resize to 32-48 px.
MIN_PERIOD = 4
SPLIT_STREAMS = {"train": 0, "test": 1}
CHUNK = 8192


def check_palette(palette: Mapping[str, Sequence[int]], key: str = "data.palette") -> np.ndarray:
    """Palette colours as a (K, 3) float32 array; a clear error naming the bad entry."""
    if len(palette) < 2:
        raise ConfigError(f"{key} needs at least two colours, got {len(palette)}")
    rgb = []
    for name, value in palette.items():
        value = list(value)
        if len(value) != 3 or not all(0 <= int(v) <= 255 for v in value):
            raise ConfigError(f"{key}.{name} must be three integers in 0..255, got {value}")
        rgb.append([int(v) for v in value])
    return np.asarray(rgb, dtype=np.float32)


def check_patterns(patterns: Mapping[str, Mapping[str, Any] | None],
                   key: str = "data.patterns") -> dict[str, dict[str, Any]]:
    """Validated pattern parameters; unknown names or invisible periods raise ConfigError."""
    out: dict[str, dict[str, Any]] = {}
    for name, params in patterns.items():
        params = dict(params or {})
        where = f"{key}.{name}"
        if name not in PATTERNS:
            raise ConfigError(f"{where}: unknown pattern; known patterns: {', '.join(PATTERNS)}")
        if name == "striped":
            period, width = int(params.get("period", 6)), int(params.get("width", 3))
            if period < MIN_PERIOD or not 0 < width < period:
                raise ConfigError(f"{where}: need period >= {MIN_PERIOD} and 0 < width < period, "
                                  f"got period={period}, width={width}")
            params = {"period": period, "width": width}
        elif name == "checked":
            size = int(params.get("size", 4))
            if 2 * size < MIN_PERIOD:
                raise ConfigError(f"{where}.size must be >= {MIN_PERIOD // 2}, got {size}")
            params = {"size": size}
        elif name == "dotted":
            period, radius = int(params.get("period", 6)), float(params.get("radius", 1.5))
            if period < MIN_PERIOD or not 0.5 <= radius < period / 2:
                raise ConfigError(f"{where}: need period >= {MIN_PERIOD} and "
                                  f"0.5 <= radius < period/2, got period={period}, radius={radius}")
            params = {"period": period, "radius": radius}
        out[name] = params
    if len(out) < 2:
        raise ConfigError(f"{key} needs at least two patterns, got {len(out)}")
    return out


def assign_attributes(
    articles: np.ndarray, n_colours: int, n_patterns: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Colour and pattern index per image, uniform and independent of the article.

    Within each article class, colours are a randomly shuffled tiling of 0..n_colours-1 with a
    random starting offset (patterns likewise, drawn independently): every image's colour is
    uniformly random, and each article gets every colour equally often (to within one image),
    so article says nothing about colour or pattern.
    """
    colours = np.empty(len(articles), dtype=np.int64)
    patterns = np.empty(len(articles), dtype=np.int64)
    for cls in np.unique(articles):
        idx = np.flatnonzero(articles == cls)
        for out, k in ((colours, n_colours), (patterns, n_patterns)):
            tiled = (np.arange(len(idx)) + rng.integers(k)) % k
            out[idx] = rng.permutation(tiled)
    return colours, patterns


def _ink_masks(name: str, params: Mapping[str, Any], n: int, size: tuple[int, int],
               rng: np.random.Generator) -> np.ndarray:
    """(n, H, W) bool: the pattern's ink pixels, each image with a random phase (and, for
    stripes, a random orientation). Dots sit on a staggered (polka-dot) lattice."""
    h, w = size
    yy = np.arange(h, dtype=np.int32)[None, :, None]
    xx = np.arange(w, dtype=np.int32)[None, None, :]
    if name == "solid":
        return np.zeros((n, h, w), dtype=bool)
    if name == "striped":
        period, width = params["period"], params["width"]
        phase = rng.integers(period, size=(n, 1, 1), dtype=np.int32)
        vertical = rng.random((n, 1, 1)) < 0.5
        coord = np.where(vertical, xx, yy) + phase
        return (coord % period) < width
    if name == "checked":
        size_ = params["size"]
        py, px = (rng.integers(2 * size_, size=(n, 1, 1), dtype=np.int32) for _ in range(2))
        return (((yy + py) // size_ + (xx + px) // size_) % 2).astype(bool)
    period, radius = params["period"], params["radius"]
    py, px = (rng.integers(period, size=(n, 1, 1), dtype=np.int32) for _ in range(2))
    dy = (yy + py) % period - period // 2
    stagger = ((yy + py) // period % 2) * (period // 2)  # polka dots: alternate rows shifted
    dx = (xx + px + stagger) % period - period // 2
    return dy * dy + dx * dx <= radius * radius


def render(
    images: np.ndarray,
    colours: np.ndarray,
    patterns: np.ndarray,
    palette: np.ndarray,
    pattern_params: Mapping[str, Mapping[str, Any]],
    rng: np.random.Generator,
    strength: float = 0.6,
    colour_jitter: int = 0,
) -> np.ndarray:
    """Grey (N, H, W) uint8 garments -> (N, H, W, 3) uint8, tinted and patterned."""
    n, h, w = images.shape
    names = list(pattern_params)
    rgb = palette[colours] + rng.integers(-colour_jitter, colour_jitter + 1, size=(n, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.float32) / 255.0
    ink = np.zeros((n, h, w), dtype=bool)
    for p, name in enumerate(names):
        idx = np.flatnonzero(patterns == p)
        if len(idx):
            ink[idx] = _ink_masks(name, pattern_params[name], len(idx), (h, w), rng)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        sl = slice(start, start + CHUNK)
        shade = images[sl].astype(np.float32) * (1.0 - strength * ink[sl])
        out[sl] = np.rint(shade[..., None] * rgb[sl, None, None, :]).astype(np.uint8)
    return out


class FashionMNISTAttrsDataModule(FashionMNISTDataModule):
    """Fashion-MNIST garments in colour and pattern: tasks `article` (+ parents such as
    `category`), `colour` (the palette's names) and `pattern` (the patterns' names).

    `attribute_seed` alone decides colours, patterns and their phases (same seed -> identical
    arrays); `seed` only decides the train/val split, as for plain Fashion-MNIST.
    """

    def __init__(
        self,
        palette: Mapping[str, Sequence[int]],
        patterns: Mapping[str, Mapping[str, Any] | None],
        attribute_seed: int = 0,
        pattern_strength: float = 0.6,
        colour_jitter: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.palette_cfg = dict(palette)
        self.patterns_cfg = dict(patterns)
        self.attribute_seed = int(attribute_seed)
        self.pattern_strength = float(pattern_strength)
        self.colour_jitter = int(colour_jitter)
        self.palette_names: tuple[str, ...] = ()
        self.palette = np.zeros((0, 3), dtype=np.float32)
        self.pattern_params: dict[str, dict[str, Any]] = {}

    def validate(self) -> None:
        """Check palette, patterns and tasks (ConfigError naming the key); fill the parsed forms.
        Called on first use, so errors surface from `setup()` like the other data errors."""
        if self.pattern_params:
            return
        self.palette = check_palette(self.palette_cfg)
        self.palette_names = tuple(str(k) for k in self.palette_cfg)
        pattern_params = check_patterns(self.patterns_cfg)
        if not 0.0 < self.pattern_strength <= 1.0:
            raise ConfigError(f"data.pattern_strength must be in (0, 1], got {self.pattern_strength}")
        if not 0 <= self.colour_jitter <= 64:
            raise ConfigError(f"data.colour_jitter must be in 0..64, got {self.colour_jitter}")
        self._check_tasks(tuple(pattern_params))
        self.pattern_params = pattern_params

    def _check_tasks(self, pattern_names: tuple[str, ...]) -> None:
        expected = {"article": CLASSES, "colour": self.palette_names, "pattern": pattern_names}
        by_name = {t.name: t for t in self.tasks}
        if "article" not in by_name:
            raise ConfigError("data.tasks must declare the 'article' task")
        for name, classes in expected.items():
            task = by_name.get(name)
            if task is not None and task.classes != classes:
                source = {"article": "the 10 Fashion-MNIST classes in label order",
                          "colour": "the names of data.palette, in order",
                          "pattern": "the names of data.patterns, in order"}[name]
                raise ConfigError(f"data.tasks.{name}.classes must list {source}: "
                                  f"{', '.join(classes)}")

    def colourise(self, images: np.ndarray, articles: np.ndarray, split: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB images, colour and pattern labels for one official split (`train` or `test`)."""
        self.validate()
        rng = np.random.default_rng([self.attribute_seed, SPLIT_STREAMS[split]])
        colours, patterns = assign_attributes(articles, len(self.palette), len(self.pattern_params),
                                              rng)
        rgb = render(images, colours, patterns, self.palette, self.pattern_params, rng,
                     self.pattern_strength, self.colour_jitter)
        return rgb, colours, patterns

    def description(self) -> str:
        return f"Fashion-MNIST (colour and pattern, attribute_seed={self.attribute_seed})"

    def official_split(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        grey, articles = read_fashion_mnist_split(self.folder, split)
        rgb, colours, patterns = self.colourise(grey, articles, split)
        return rgb, {"article": articles, "colour": colours, "pattern": patterns}

def sample_grid(datamodule: FashionMNISTAttrsDataModule, split: str = "test",
                scale: int = 2) -> np.ndarray:
    """One image per (pattern, colour): rows = patterns, columns = colours, HxWx3 uint8."""
    images, targets = datamodule.load_splits()[split]
    n_colours, n_patterns = len(datamodule.palette), len(datamodule.pattern_params)
    h, w = images.shape[1:3]
    pad = 2
    grid = np.full((n_patterns * (h + pad) + pad, n_colours * (w + pad) + pad, 3), 64, np.uint8)
    for p in range(n_patterns):
        for c in range(n_colours):
            hits = np.flatnonzero((targets["pattern"] == p) & (targets["colour"] == c))
            if len(hits):
                y, x = pad + p * (h + pad), pad + c * (w + pad)
                grid[y:y + h, x:x + w] = images[hits[(p * n_colours + c) % len(hits)]]
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m fashionlab.data.readers.fashion_mnist_attrs --grid docs/fashion_mnist_attrs.png`."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, required=True, help="PNG to write")
    parser.add_argument("--conf", type=Path, default=Path("conf"), help="config folder")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="train config overrides, e.g. data.root=...")
    args = parser.parse_args(argv)
    with initialize_config_dir(str(args.conf.resolve()), version_base="1.3"):
        cfg = compose("train", overrides=["data=fashion_mnist_attrs", *args.overrides])
    datamodule = instantiate(cfg.data, _recursive_=False)
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample_grid(datamodule, scale=args.scale)).save(args.grid, optimize=True)
    print(f"wrote {args.grid}: rows {', '.join(datamodule.pattern_params)}; "
          f"columns {', '.join(datamodule.palette_names)}")


if __name__ == "__main__":
    main()
