"""Fixture writers for the recommendation tests: a tiny fashion_mnist_attrs checkpoint and its
evaluation directory, photo files exported from the catalogue, a CelebA-format set of face-like
pictures for the style model, and face photos to recommend outfits for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fixtures_readers import CELEBA_ATTRIBUTES, CELEBA_HEADER
from fixtures_runs import compose_config, evaluate_run
from PIL import Image

from fashionlab.training.run import train

from conftest import tiny_overrides

STYLES = ("formal", "casual", "intellectual")
# The CelebA attribute that makes each style under conf/data/celeba_style.yaml's rules.
STYLE_ATTRIBUTE = {"formal": "Wearing_Necktie", "casual": "Wearing_Hat", "intellectual": "Eyeglasses"}


def train_fashion_model(fmnist_dir: Path, out_dir: Path) -> Path:
    """One short epoch of EfficientNet-Lite0 at 32 px on fashion_mnist_attrs; the best checkpoint."""
    cfg = compose_config("train", [*tiny_overrides(fmnist_dir, out_dir), "data=fashion_mnist_attrs",
                                   "data.image_size=32", "trainer.max_epochs=1", "training.freeze_epochs=0",
                                   "optimizer.lr=5e-3", "test=false"])
    train(cfg)
    return out_dir / "checkpoints" / "best.ckpt"


def make_eval_dir(ckpt: Path, out: Path) -> Path:
    """evaluate.py's evaluation directory for `ckpt` (flat index, gallery = train split)."""
    return evaluate_run(ckpt.parent.parent, out)


def face_image(style: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A face-like RGB picture: skin-coloured oval with eyes on a plain background, plus the
    style's cue: formal = dark jacket and white necktie, casual = a bright cap and T-shirt,
    intellectual = glasses and a striped knitted top."""
    y, x = np.mgrid[:size, :size]
    image = np.zeros((size, size, 3), dtype=np.float32) + rng.uniform(150, 230, 3)
    face = ((x - size / 2) / (size * 0.22)) ** 2 + ((y - size * 0.4) / (size * 0.28)) ** 2 <= 1
    image[face] = np.array([224, 172, 140]) + rng.normal(0, 8, 3)
    eye_y = int(size * 0.36)
    for eye_x in (int(size * 0.4), int(size * 0.6)):
        image[eye_y - 1:eye_y + 1, eye_x - 1:eye_x + 1] = 40
    body = y >= int(size * 0.74)
    if style == 0:
        image[body] = [30, 30, 45]
        image[body & (abs(x - size / 2) < size * 0.08)] = 245
    elif style == 1:
        colour = rng.choice([[230, 60, 50], [60, 170, 230], [250, 200, 40]])
        image[body] = colour
        image[(y < size * 0.2) & (abs(x - size / 2) < size * 0.26)] = colour
    else:
        image[body] = [120, 90, 60]
        image[body & (y % 3 == 0)] = [170, 140, 100]
        for eye_x in (int(size * 0.4), int(size * 0.6)):
            image[np.abs(np.hypot(x - eye_x, y - eye_y) - size * 0.07) < 0.9] = 10
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def write_celeba_faces(root: Path, per_style: int = 30, seed: int = 0) -> Path:
    """list_attr_celeba.txt, list_eval_partition.txt and img_align_celeba/ in CelebA's published
    layout, with face-like pictures whose one style attribute is visible in the picture."""
    rng = np.random.default_rng(seed)
    column = {a: j for j, a in enumerate(CELEBA_ATTRIBUTES)}
    rows, parts = [], []
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    for i in range(per_style * len(STYLES)):
        style = i % len(STYLES)
        name = f"{i + 1:06d}.jpg"
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))
        for attribute in (*STYLE_ATTRIBUTE.values(), "Heavy_Makeup"):
            values[column[attribute]] = -1
        values[column[STYLE_ATTRIBUTE[STYLES[style]]]] = 1
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
        fold = i // len(STYLES) % 6
        parts.append(f"{name} {0 if fold < 4 else fold - 3}")
        Image.fromarray(face_image(style, rng, 40)).save(root / "img_align_celeba" / name, quality=95)
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(rows)), CELEBA_HEADER, *rows]) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


def train_style_model(celeba_root: Path, out_dir: Path) -> Path:
    """A few epochs of the face style classifier (data=celeba_style) on the CelebA-format faces."""
    cfg = compose_config("train", [
        "data=celeba_style", f"data.root={celeba_root}", "data.image_size=32", "data.batch_size=16",
        "data.eval_batch_size=32", "data.num_workers=0", "logger=none", "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0", "training.freeze_epochs=0", "training.monitor=val/style/acc",
        "optimizer.lr=5e-3", "test=false", f"hydra.run.dir={out_dir}"])
    train(cfg)
    return out_dir / "checkpoints" / "best.ckpt"


def write_faces(folder: Path, per_style: int = 2, seed: int = 99) -> list[Path]:
    """Face photos (PNG, 64 px) named <style>_<n>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for s, style in enumerate(STYLES):
        for i in range(per_style):
            path = folder / f"{style}_{i}.png"
            Image.fromarray(face_image(s, rng, 64)).save(path)
            paths.append(path)
    return paths


def write_photos(images: dict[str, np.ndarray], folder: Path) -> dict[str, Path]:
    """Save RGB arrays as photo files, the encoding chosen by the name: .png (lossless RGB), .jpg,
    *_rgba.png (RGBA), *_gray.png (L). Returns name -> path."""
    paths = {}
    for name, image in images.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        if name.endswith("_rgba.png"):
            picture = picture.convert("RGBA")
        elif name.endswith("_gray.png"):
            picture = picture.convert("L")
        picture.save(path)
        paths[name] = path
    return paths
