"""How an image becomes the backbone's input: one preprocessing record, and the eval pipeline
built from it.

The record (input size, interpolation, mean, std, grey input) is `data.preprocess` in the
config. Its values come from timm's data config for the backbone (`timm.data.resolve_data_config`,
see fashionlab.models.backbones.timm_data_config), a training run resolves it once, and every
checkpoint stores it with the run's config, so that evaluation and inference build exactly the
eval pipeline the model was trained with (the yaml files may change afterwards). The train
pipeline stays configurable (conf/data/*.yaml) and reads the record's values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import albumentations as A
import cv2
from omegaconf import DictConfig, OmegaConf

from fashionlab.config_safety import TRANSFORMS, safe_instantiate
from fashionlab.errors import ConfigError

log = logging.getLogger(__name__)

#: timm's interpolation names -> OpenCV flags (what albumentations' resizes take).
CV2_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
#: data.preprocess.decode's values (see Preprocessing).
DECODE_MODES = ("full", "reduced")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cv2_interpolation(name: str) -> int:
    """The OpenCV flag of a timm interpolation name ("bicubic" -> cv2.INTER_CUBIC)."""
    try:
        return CV2_INTERPOLATION[str(name)]
    except KeyError:
        raise ConfigError(f"data.preprocess.interpolation={name!r} is not one of "
                          f"{', '.join(CV2_INTERPOLATION)}") from None


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing record. `input_size`: the square side the model sees; `grayscale`: the
    data's images are HxW grey, repeated to 3 channels after resizing (Fashion-MNIST).

    `decode`: how image files are decoded — `full`, or `reduced`: a JPEG at the smallest DCT scale
    (1/2, 1/4, 1/8) whose shorter side is still >= `decode_min_side` = ceil(input_size *
    decode_margin) (fashionlab.data.images.load_rgb). The margin covers the train crop:
    RandomResizedCrop (conf/data/transforms/rgb.yaml, scale [0.6, 1], ratio [3/4, 4/3]) takes a crop
    whose short side can be sqrt(0.6 * 3/4) ~ 0.67 of the image's short side, and 0.67 * 1.5 >= 1,
    so with margin 1.5 that crop still has >= input_size pixels per side: it is downsampled to
    input_size as before, never upsampled. A record without these keys (checkpoints written before
    them) decodes in full, as it trained."""

    input_size: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    grayscale: bool = False
    decode: str = "full"
    decode_margin: float = 1.5

    def __post_init__(self) -> None:
        cv2_interpolation(self.interpolation)
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"data.preprocess.decode={self.decode!r} is not one of "
                              f"{', '.join(DECODE_MODES)}")
        margin = self.decode_margin
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not margin >= 1:
            raise ConfigError(f"data.preprocess.decode_margin={margin!r} must be a number >= 1")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) \
                or self.input_size < 1:
            raise ConfigError(f"data.preprocess.input_size={self.input_size!r} must be a whole "
                              f"number of pixels")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if len(value) != 3 or (key == "std" and min(value) <= 0):
                raise ConfigError(f"data.preprocess.{key}={list(value)} must be 3 numbers"
                                  + (" above 0" if key == "std" else ""))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], default_size: int | None = None) -> Preprocessing:
        """The record from its config mapping (`input_size` null: `default_size`)."""
        values = dict(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig)
                      else cfg)
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"data.preprocess: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(cls.__dataclass_fields__)})")
        if values.get("input_size") is None:
            values["input_size"] = default_size
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if isinstance(values.get("decode_margin"), int) and not isinstance(values["decode_margin"], bool):
            values["decode_margin"] = float(values["decode_margin"])
        return cls(**values)

    def to_config(self) -> dict[str, Any]:
        """Plain values for the config (and so for the checkpoint)."""
        record = asdict(self)
        record.update(mean=list(self.mean), std=list(self.std))
        return record

    @property
    def cv2_interpolation(self) -> int:
        return cv2_interpolation(self.interpolation)

    @property
    def decode_min_side(self) -> int | None:
        """The shorter side image files are decoded to at least (load_rgb's `min_side`):
        ceil(input_size * decode_margin) for decode=reduced; None (full decoding) otherwise."""
        if self.decode != "reduced":
            return None
        return math.ceil(self.input_size * self.decode_margin - 1e-9)


def build_eval_transform(record: Preprocessing) -> A.Compose:
    """The eval pipeline: resize the whole image to input_size with the record's interpolation,
    grey to 3 channels when the data is grey, normalise with the record's mean/std, to tensor."""
    size = record.input_size
    return A.Compose([
        A.Resize(height=size, width=size, interpolation=record.cv2_interpolation),
        *([A.ToRGB()] if record.grayscale else []),
        A.Normalize(mean=record.mean, std=record.std),
        A.ToTensorV2(),
    ])


@dataclass(frozen=True)
class EvalTransform:
    """A trained model's eval pipeline (an albumentations callable: `transform(image=...)`).
    `grayscale`: it takes HxW grey images; `record`: None for a checkpoint without one."""

    pipeline: Callable[..., dict[str, Any]]
    grayscale: bool
    record: Preprocessing | None

    def __call__(self, **data: Any) -> dict[str, Any]:
        return self.pipeline(**data)


class _Checkpoint(Protocol):
    cfg: DictConfig
    path: Path


def has_record(data_cfg: Mapping[str, Any]) -> bool:
    """True when a data config carries the preprocessing record (configs before it did not)."""
    return data_cfg.get("preprocess") is not None


def legacy_eval_pipeline(transforms_cfg: Mapping[str, Any], where: str) -> Callable[..., Any]:
    """The `transforms.eval` pipeline a config written before the record names."""
    return safe_instantiate(transforms_cfg["eval"], where, [TRANSFORMS], key="transforms.eval")


def eval_transform_from_checkpoint(checkpoint: _Checkpoint) -> EvalTransform:
    """The eval transform a loaded checkpoint was trained with: from the record its config
    stores (`data.preprocess`); an older checkpoint without one falls back, with a warning, to
    the `data.transforms.eval` pipeline stored in its config."""
    data = checkpoint.cfg.data
    if has_record(data):
        record = Preprocessing.from_config(data.preprocess, default_size=data.get("image_size"))
        return EvalTransform(build_eval_transform(record), record.grayscale, record)
    log.warning("%s has no preprocessing record (written before data.preprocess existed): "
                "using the data.transforms.eval pipeline stored in its config", checkpoint.path)
    steps = data.transforms.eval.get("transforms") or []
    grayscale = any(str(step.get("_target_", "")).endswith(".ToRGB") for step in steps)
    pipeline = safe_instantiate(data.transforms.eval, str(checkpoint.path), [TRANSFORMS],
                                key="hyper_parameters.config.data.transforms.eval")
    return EvalTransform(pipeline, grayscale, None)
