"""Preprocessing from timm: one record (data.preprocess) resolved from timm's data config, applied
with its interpolation by the train and eval pipelines, stored in the checkpoint and used by the
predictor; older checkpoints without it keep their stored eval pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import timm.data
import torch
from fixtures_runs import compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fashionlab.data.preprocess import Preprocessing, build_eval_transform, cv2_interpolation
from fashionlab.errors import ConfigError
from fashionlab.inference.checkpoint import read_checkpoint
from fashionlab.models.backbones import timm_data_config
from fashionlab.recommend.predict import Predictor
from fashionlab.training.run import prepare_config, train

from conftest import CONF, tiny_overrides

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_preprocessing")

BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))


def reference(image: np.ndarray, size: int, flag: int, mean, std) -> torch.Tensor:
    """cv2 resize of a grey HxW uint8 image, repeated to 3 channels, normalised: CHW float."""
    resized = cv2.resize(image, (size, size), interpolation=flag).astype(np.float32) / 255.0
    rgb = np.repeat(resized[None], 3, axis=0)
    return torch.from_numpy((rgb - np.asarray(mean, np.float32)[:, None, None])
                            / np.asarray(std, np.float32)[:, None, None])


def fmnist_cfg(compose_cfg, fmnist_dir, tmp_path, *extra: str):
    return prepare_config(compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "backbone=resnet50",
                                       "backbone.pretrained=false", "data.image_size=36",
                                       "data.transforms.hflip_p=0.0", *extra]))


# -- applied: the interpolation, mean and std of the record reach the pipelines ------------------

def test_bicubic_is_applied_by_train_and_eval_pipelines(compose_cfg, fmnist_dir, tmp_path):
    """ResNet-50's timm data config says bicubic: 28 -> 36 px resizes, train and eval, are bicubic
    (and visibly differ from bilinear on this image)."""
    cfg = fmnist_cfg(compose_cfg, fmnist_dir, tmp_path)
    dm = instantiate(cfg.data, _recursive_=False)
    dm.setup()
    mean, std = timm.data.IMAGENET_DEFAULT_MEAN, timm.data.IMAGENET_DEFAULT_STD
    for split in ("val", "train"):
        raw = dm.splits[split].images[0]
        out = dm.splits[split][0]["image"]
        bicubic = reference(raw, 36, cv2.INTER_CUBIC, mean, std)
        bilinear = reference(raw, 36, cv2.INTER_LINEAR, mean, std)
        assert (bicubic - bilinear).abs().max() > 0.1
        assert torch.allclose(out, bicubic, atol=1e-5), split
        assert not torch.allclose(out, bilinear, atol=1e-2), split


@pytest.mark.parametrize(("backbone", "flag"), [("resnet50", cv2.INTER_CUBIC),
                                                ("vgg16", cv2.INTER_LINEAR)])
def test_rgb_train_crop_uses_the_backbone_interpolation(compose_cfg, tmp_path, backbone, flag):
    cfg = prepare_config(compose_cfg(["data=csv", f"data.root={tmp_path}", f"backbone={backbone}",
                                      "backbone.pretrained=false", f"hydra.run.dir={tmp_path}"]))
    crop = instantiate(cfg.data.transforms.train).transforms[0]
    assert type(crop).__name__ == "RandomResizedCrop" and crop.interpolation == flag


def test_interpolation_override_is_honoured(compose_cfg, fmnist_dir, tmp_path):
    cfg = fmnist_cfg(compose_cfg, fmnist_dir, tmp_path, "data.preprocess.interpolation=bilinear")
    assert cfg.data.preprocess.interpolation == "bilinear"
    dm = instantiate(cfg.data, _recursive_=False)
    assert dm.eval_transform().transforms[0].interpolation == cv2.INTER_LINEAR
    assert instantiate(cfg.data.transforms.train).transforms[0].interpolation == cv2.INTER_LINEAR


# -- from timm ------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", BACKBONES)
def test_record_comes_from_timm(option, compose_cfg, fmnist_dir, tmp_path):
    """Each backbone config names only what timm cannot know; mean, std and interpolation are
    timm's pretrained config's (metadata: no network, no weights)."""
    yaml = OmegaConf.load(CONF / "backbone" / f"{option}.yaml")
    assert not {"mean", "std", "interpolation", "input_size"} & set(yaml)
    extra = ["backbone.name=convnext_atto"] if option == "timm" else []
    cfg = prepare_config(compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), f"backbone={option}",
                                      "backbone.pretrained=false", *extra]))
    pretrained_cfg = timm.models.get_pretrained_cfg(cfg.backbone.name)
    record = OmegaConf.to_container(cfg.data.preprocess)
    assert record == {"input_size": cfg.data.image_size, "interpolation": pretrained_cfg.interpolation,
                      "mean": list(pretrained_cfg.mean), "std": list(pretrained_cfg.std),
                      "grayscale": True, "decode": "full", "decode_margin": 1.5}


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet50", "convnext_atto"])
def test_same_as_timm_on_the_created_model(name):
    model = timm.create_model(name, pretrained=False, num_classes=0)
    expected = timm.data.resolve_model_data_config(model)
    ours = timm_data_config(name)
    assert ours["interpolation"] == expected["interpolation"]
    for key in ("mean", "std", "input_size"):
        assert tuple(ours[key]) == tuple(expected[key]), key


def test_bad_records_are_config_errors(compose_cfg, fmnist_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.preprocess\.interpolation='cubic'"):
        fmnist_cfg(compose_cfg, fmnist_dir, tmp_path, "data.preprocess.interpolation=cubic")
    with pytest.raises(ConfigError, match=r"data\.preprocess\.input_size=40 differs"):
        fmnist_cfg(compose_cfg, fmnist_dir, tmp_path, "data.preprocess.input_size=40")
    with pytest.raises(ConfigError, match=r"data\.preprocess\.mean"):
        Preprocessing(input_size=8, mean=(0.5,))
    assert cv2_interpolation("bicubic") == cv2.INTER_CUBIC


# -- stored in the checkpoint, used by the predictor ---------------------------------------------

@pytest.fixture(scope="module")
def ckpt(fmnist_dir, tmp_path_factory) -> Path:
    """A few steps of Lite0 (random init) at 36 px on the tiny Fashion-MNIST fixture."""
    out = tmp_path_factory.mktemp("preprocess-run")
    cfg = compose_config("train", [*tiny_overrides(fmnist_dir, out, backbone=None),
                                   "backbone.pretrained=false", "data.image_size=36",
                                   "training.freeze_epochs=0", "test=false", "trainer.limit_train_batches=2",
                                   "callbacks.progress_bar=null"])
    train(cfg)
    return out / "checkpoints" / "best.ckpt"


def rewrite(ckpt: Path, out: Path, edit) -> Path:
    checkpoint = torch.load(ckpt, weights_only=True)
    edit(checkpoint["hyper_parameters"]["config"]["data"])
    torch.save(checkpoint, out)
    return out


def grey_as_rgb(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    grey = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    return grey, np.repeat(grey[..., None], 3, axis=2)


@pytest.mark.slow
def test_checkpoint_carries_the_record_and_the_predictor_uses_it(ckpt, tmp_path, monkeypatch):
    stored = read_checkpoint(ckpt)["hyper_parameters"]["config"]["data"]["preprocess"]
    lite0 = timm.models.get_pretrained_cfg("tf_efficientnet_lite0")
    assert stored == {"input_size": 36, "interpolation": "bicubic", "mean": list(lite0.mean),
                      "std": list(lite0.std), "grayscale": True, "decode": "full", "decode_margin": 1.5}
    # Whatever timm or the yaml files say today, the predictor builds what the checkpoint stores.
    monkeypatch.setattr("fashionlab.models.backbones._resolve_data_config",
                        lambda *a: pytest.fail("the predictor asked timm"))
    predictor = Predictor.from_checkpoint(ckpt)
    assert predictor.transform.record == Preprocessing.from_config(stored)
    grey, rgb = grey_as_rgb()
    out = predictor.transform(image=predictor.model_input(rgb))["image"]
    assert torch.allclose(out, reference(grey, 36, cv2.INTER_CUBIC, lite0.mean, lite0.std), atol=1e-5)
    # A changed record in the file is what the predictor applies (nearest, other statistics).
    edited = rewrite(ckpt, tmp_path / "edited.ckpt", lambda data: data["preprocess"].update(
        interpolation="nearest", mean=[0.2, 0.2, 0.2], std=[0.1, 0.1, 0.1]))
    predictor = Predictor.from_checkpoint(edited)
    out = predictor.transform(image=predictor.model_input(rgb))["image"]
    assert torch.allclose(out, reference(grey, 36, cv2.INTER_NEAREST, [0.2] * 3, [0.1] * 3), atol=1e-5)
    assert predictor.predict([rgb]).embeddings.shape[0] == 1


def legacy(data: dict) -> None:
    """The data config as checkpoints stored it before the record: a bilinear eval pipeline."""
    data.pop("preprocess")
    data["transforms"]["eval"] = {"_target_": "albumentations.Compose", "transforms": [
        {"_target_": "albumentations.Resize", "height": 36, "width": 36},
        {"_target_": "albumentations.ToRGB"},
        {"_target_": "albumentations.Normalize", "mean": [0.5] * 3, "std": [0.5] * 3},
        {"_target_": "albumentations.ToTensorV2"}]}


def test_old_checkpoint_falls_back_to_its_eval_pipeline(ckpt, tmp_path, caplog):
    old = rewrite(ckpt, tmp_path / "old.ckpt", legacy)
    with caplog.at_level(logging.WARNING):
        predictor = Predictor.from_checkpoint(old)
    assert "no preprocessing record" in caplog.text
    assert predictor.transform.record is None and predictor.grayscale
    grey, rgb = grey_as_rgb(1)
    out = predictor.transform(image=predictor.model_input(rgb))["image"]
    assert torch.allclose(out, reference(grey, 36, cv2.INTER_LINEAR, [0.5] * 3, [0.5] * 3), atol=1e-5)
    # evaluate.py's data module, built from the same stored config, uses it too
    data = OmegaConf.create(read_checkpoint(old)["hyper_parameters"]["config"]["data"])
    dm = instantiate(data, _recursive_=False)
    assert dm.preprocess is None
    assert type(dm.eval_transform().transforms[0]).__name__ == "Resize"
    assert dm.eval_transform().transforms[0].interpolation == cv2.INTER_LINEAR


def test_data_module_on_its_own_has_a_plain_record():
    """Built without a config (no backbone), the data module resizes to image_size, ImageNet stats."""
    from fashionlab.data.datamodule import MultiTaskDataModule

    dm = MultiTaskDataModule(tasks={"label": {"kind": "multiclass", "classes": ["a", "b"]}},
                             transforms={"train": {}}, image_size=20)
    assert dm.preprocess == Preprocessing(input_size=20)
    resize = build_eval_transform(dm.preprocess).transforms[0]
    assert (resize.height, resize.interpolation) == (20, cv2.INTER_LINEAR)
