"""Fixture writers for the recommendation tests: a tiny trained checkpoint, its evaluation
directory, photo files exported from the catalogue, and face images for the style model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image

from fashionlab.data.datamodule import MultiTaskDataModule
from fashionlab.training.run import train

from conftest import CONF, tiny_overrides

STYLES = ("formal", "casual", "intellectual")


def compose_train(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.run.dir
    GlobalHydra.instance().clear()
    return cfg


def train_tiny(cfg: DictConfig) -> Path:
    """Train `cfg` and return its best checkpoint."""
    train(cfg)
    return Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt"


def face_image(style: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A face-like RGB picture: skin-coloured oval with eyes on a plain background; the style is
    in what is worn: formal = dark jacket and white collar, casual = bright T-shirt,
    intellectual = glasses and a knitted (striped) top."""
    y, x = np.mgrid[:size, :size]
    image = np.zeros((size, size, 3), dtype=np.float32) + rng.uniform(150, 230, 3)
    face = ((x - size / 2) / (size * 0.22)) ** 2 + ((y - size * 0.38) / (size * 0.28)) ** 2 <= 1
    image[face] = np.array([224, 172, 140]) + rng.normal(0, 8, 3)
    eye_y = int(size * 0.33)
    for eye_x in (int(size * 0.4), int(size * 0.6)):
        image[eye_y - 1:eye_y + 1, eye_x - 1:eye_x + 1] = 40
    body = y >= int(size * 0.72)
    if style == 0:
        image[body] = [30, 30, 45]
        image[body & (abs(x - size / 2) < size * 0.08)] = 245
    elif style == 1:
        image[body] = rng.choice([[230, 60, 50], [60, 170, 230], [250, 200, 40]])
    else:
        image[body] = [120, 90, 60]
        image[body & (y % 3 == 0)] = [170, 140, 100]
        for eye_x in (int(size * 0.4), int(size * 0.6)):
            ring = np.abs(np.hypot(x - eye_x, y - eye_y) - size * 0.07) < 0.9
            image[ring] = 10
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


class FaceStyleDataModule(MultiTaskDataModule):
    """Generated face pictures labelled formal / casual / intellectual (task `style`)."""

    def __init__(self, n_per_class: int = 24, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_per_class = int(n_per_class)

    def load_splits(self) -> dict:
        out = {}
        for offset, split in enumerate(("train", "val", "test")):
            rng = np.random.default_rng(self.seed + offset)
            n = self.n_per_class if split == "train" else max(3, self.n_per_class // 4)
            labels = np.repeat(np.arange(len(STYLES)), n)
            images = np.stack([face_image(int(s), rng, self.image_size) for s in labels])
            out[split] = (images, {"style": labels})
        return out


def face_style_data_config(image_size: int = 32) -> dict:
    steps = [{"_target_": "albumentations.Resize", "height": image_size, "width": image_size},
             {"_target_": "albumentations.Normalize", "mean": [0.5] * 3, "std": [0.5] * 3},
             {"_target_": "albumentations.ToTensorV2"}]
    pipeline = {"_target_": "albumentations.Compose", "_convert_": "all", "transforms": steps}
    return {
        "_target_": f"{__name__}.FaceStyleDataModule",
        "image_size": image_size, "batch_size": 24, "eval_batch_size": 64, "seed": 0,
        "tasks": {"style": {"kind": "multiclass", "classes": list(STYLES)}},
        "transforms": {"hflip_p": 0.5, "train": pipeline, "eval": pipeline},
    }


def face_style_config(fmnist_dir: Path, out_dir: Path) -> DictConfig:
    cfg = compose_train([*tiny_overrides(fmnist_dir, out_dir), "training.monitor=val/style/acc",
                         "trainer.max_epochs=2", "training.freeze_epochs=0", "optimizer.lr=5e-3",
                         "test=false"])
    with open_dict(cfg):
        cfg.data = OmegaConf.create(face_style_data_config())
    return cfg


def write_faces(folder: Path, per_style: int = 2, seed: int = 99) -> list[Path]:
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
    """Save RGB arrays as photo files in several encodings: `name` ending in .png (lossless RGB),
    .jpg (lossy), _rgba.png, _gray.png (L). Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
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


def make_eval_dir(ckpt: Path, out: Path) -> Path:
    """The evaluation directory of `ckpt` (index, gallery table, manifest)."""
    from _standin_eval import build_eval_dir

    return build_eval_dir(ckpt, out)
