"""Reduced-size JPEG decoding (load_rgb's min_side, data.preprocess.decode): on photo-like
full-size JPEGs it gives what full decoding gives after the eval resize, honours min_side, keeps
every safety check, and the preprocessing record carries it from training to inference."""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np
import pytest
from fixtures_photos import PHOTO_SIZES
from hydra.utils import instantiate
from omegaconf import open_dict
from photo_data import write_kaggle_photos
from PIL import Image

from fashionlab.data.file_dataset import FileImageDataset
from fashionlab.data.images import DCT_SCALES, TooManyPixelsError, dct_scale, load_rgb
from fashionlab.data.preprocess import Preprocessing, cv2_interpolation
from fashionlab.errors import BadImageError, ConfigError

MIN_SIDE = 336  # Preprocessing(input_size=224, decode="reduced").decode_min_side
# Mean absolute difference per channel (grey levels of 255) between the 224 px eval resize of the
# reduced and of the full decoding. Measured on 24 of the generator's photos (8 each at 1800x2400,
# 2400x1800, 1200x1600; 2026-12-03): at most 2.5 with bicubic or bilinear resizing (mostly the
# aliasing of full-size grain by a 4-tap kernel at 1/8), 0.45 with area resizing; the bounds leave margin.
BOUNDS = {"bicubic": 4.0, "bilinear": 4.0, "area": 1.0}
EXPECTED_SCALE = {"portrait": 4, "landscape": 4, "medium": 2}  # 1800 // 336 = 5 -> 4; 1200 // 336 = 3 -> 2


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(0, 1))


def area_resized(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (like.shape[1], like.shape[0]), interpolation=cv2.INTER_AREA)


# -- (1) what the model sees ------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PHOTO_SIZES))
def test_reduced_decoding_matches_full_decoding_after_the_eval_resize(photo_files, name):
    width, height = PHOTO_SIZES[name]
    full = load_rgb(photo_files[name])
    reduced = load_rgb(photo_files[name], min_side=MIN_SIDE)
    scale = EXPECTED_SCALE[name]
    assert full.shape == (height, width, 3)
    assert reduced.shape == (math.ceil(height / scale), math.ceil(width / scale), 3)
    for interpolation, bound in BOUNDS.items():
        resize = A.Resize(224, 224, interpolation=cv2_interpolation(interpolation))
        diff = mean_abs_diff(resize(image=full)["image"], resize(image=reduced)["image"])
        assert diff.max() < bound, (name, interpolation, diff)


# -- (2) min_side ------------------------------------------------------------------------------------

@pytest.mark.parametrize("min_side", [1, 100, 225, 226, 336, 450, 451, 900, 901, 1800, 5000])
def test_min_side_is_honoured_at_the_smallest_scale(photo_files, min_side):
    short_full = min(PHOTO_SIZES["portrait"])  # 1800: every DCT scale divides it
    image = load_rgb(photo_files["portrait"], min_side=min_side)
    short = min(image.shape[:2])
    scale = short_full // short
    assert scale in DCT_SCALES and scale * short == short_full
    assert scale == dct_scale(PHOTO_SIZES["portrait"], min_side)
    assert short >= min(min_side, short_full)  # never below min_side (nor upsampled past full size)
    if scale < max(DCT_SCALES):
        assert short_full / (2 * scale) < min_side  # the next smaller scale would be too small


def test_only_jpegs_are_decoded_at_reduced_size(photo_files, tmp_path):
    full = load_rgb(photo_files["medium"])
    Image.fromarray(full).save(tmp_path / "photo.png", compress_level=1)
    assert load_rgb(tmp_path / "photo.png", min_side=100).shape == full.shape
    assert load_rgb(photo_files["medium"]).shape == full.shape  # min_side None: full decoding


@pytest.mark.parametrize("mode", ["exif", "L", "CMYK"])
def test_orientation_grey_and_cmyk_jpegs_under_min_side(photo_files, tmp_path, mode):
    """1200x1600 stored; min_side 300 -> 1/4 (300x400), upright, 3 channels, the same picture."""
    photo = Image.open(photo_files["medium"]).convert("RGB")
    path = tmp_path / f"{mode}.jpg"
    if mode == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
        photo.save(path, exif=exif, quality=90)
    else:
        photo.convert(mode).save(path, quality=90)
    full, reduced = load_rgb(path), load_rgb(path, min_side=300)
    expected = (400, 300, 3) if mode != "exif" else (300, 400, 3)
    assert full.shape == (expected[0] * 4, expected[1] * 4, 3) and reduced.shape == expected
    assert mean_abs_diff(area_resized(full, reduced), reduced).max() < 3.0
    if mode == "L":
        assert (reduced[..., 0] == reduced[..., 2]).all()


def test_boxes_are_decoded_so_that_the_box_keeps_min_side(photo_files):
    path = str(photo_files["portrait"])
    box = (300, 600, 1500, 2100)  # 1200 x 1500: min_side 336 needs the image's short side >= 504 -> 1/2
    reduced = FileImageDataset([path], {}, boxes=[box], min_side=MIN_SIDE).raw_image(0)
    full = FileImageDataset([path], {}, boxes=[box]).raw_image(0)
    assert full.shape == (1500, 1200, 3) and reduced.shape == (750, 600, 3)
    assert mean_abs_diff(area_resized(full, reduced), reduced).max() < 2.0
    small = FileImageDataset([path], {}, boxes=[(10, 10, 110, 210)], min_side=MIN_SIDE).raw_image(0)
    assert small.shape == (200, 100, 3)  # a box smaller than min_side: decoded in full


# -- (3) safety checks under min_side ----------------------------------------------------------------

def test_truncated_jpeg_is_a_bad_image_under_min_side(photo_files, tmp_path):
    data = photo_files["portrait"].read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(BadImageError, match=r"cut\.jpg"):
        load_rgb(path, min_side=MIN_SIDE)


def test_pixel_cap_reads_the_stored_size_before_decoding(photo_files):
    """1800x2400 = 4.32 Mpx is refused under a 4 Mpx cap although 1/4 decoding would be 0.27 Mpx."""
    with pytest.raises(TooManyPixelsError, match="1800x2400"):
        load_rgb(photo_files["portrait"], max_pixels=4_000_000, min_side=MIN_SIDE)


def test_refused_format_stays_refused_under_min_side(tmp_path):
    path = tmp_path / "drawing.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(BadImageError, match="not an image file of an accepted format"):
        load_rgb(path, min_side=MIN_SIDE)


# -- (4) the preprocessing record --------------------------------------------------------------------

def test_record_without_decode_keys_decodes_in_full():
    old = {"input_size": 224, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3,
           "grayscale": False}
    record = Preprocessing.from_config(old)
    assert record.decode == "full" and record.decode_min_side is None


def test_reduced_record_and_its_min_side():
    record = Preprocessing.from_config({"input_size": 224, "decode": "reduced", "decode_margin": 1.5})
    assert record.decode_min_side == 336
    assert Preprocessing.from_config({"input_size": 32, "decode": "reduced", "decode_margin": 2})\
        .decode_min_side == 64
    stored = record.to_config()
    assert stored["decode"] == "reduced" and stored["decode_margin"] == 1.5
    assert Preprocessing.from_config(stored) == record


@pytest.mark.parametrize("values, key", [({"decode": "half"}, "data.preprocess.decode="),
                                         ({"decode": "reduced", "decode_margin": 0.9}, "decode_margin"),
                                         ({"decode_margin": "wide"}, "decode_margin")])
def test_bad_decode_values_are_config_errors(values, key):
    with pytest.raises(ConfigError, match=key):
        Preprocessing.from_config({"input_size": 224, **values})


def test_file_configs_decode_reduced_and_fashion_mnist_in_full(compose_cfg, tmp_path):
    root = write_kaggle_photos(tmp_path / "photos", 30, size=(120, 160))
    overrides = ["data=fashion_products", f"data.root={root}", "data.balance.min_count=2",
                 f"hydra.run.dir={tmp_path / 'run'}"]
    datamodule = instantiate(compose_cfg(overrides).data, _recursive_=False)
    datamodule.setup()
    assert {name: ds.min_side for name, ds in datamodule.splits.items()} == \
        {"train": MIN_SIDE, "val": MIN_SIDE, "test": MIN_SIDE}
    full = instantiate(compose_cfg([*overrides, "data.preprocess.decode=full"]).data, _recursive_=False)
    full.setup()
    assert full.splits["train"].min_side is None
    assert "decode" not in compose_cfg([]).data.preprocess  # Fashion-MNIST: arrays, nothing to decode


@pytest.mark.slow
def test_checkpoint_stores_the_decoding_and_the_predictor_uses_it(compose_cfg, tmp_path):
    from fashionlab.inference.checkpoint import load_checkpoint
    from fashionlab.inference.predictor import Predictor
    from fashionlab.recommend.predict import predict_files
    from fashionlab.training.run import train

    root = write_kaggle_photos(tmp_path / "photos", 30, size=(240, 320), seed=3)
    train(compose_cfg([
        "data=fashion_products", f"data.root={root}", "data.balance.min_count=2", "data.image_size=32",
        "data.batch_size=8", "data.eval_batch_size=16", "data.num_workers=0", "backbone=efficientnet_lite0",
        "logger=none", "trainer=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "test=false", f"hydra.run.dir={tmp_path / 'run'}"]))
    loaded = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    stored = loaded.cfg.data.preprocess
    assert stored.decode == "reduced" and stored.decode_margin == 1.5
    predictor = Predictor(loaded)
    assert predictor.decode_min_side == 48  # ceil(32 * 1.5)
    photo = next((root / "images").glob("*.jpg"))
    table = predict_files(predictor, [photo], progress=False)
    task = predictor.tasks[0].name
    expected = predictor.predict([load_rgb(photo, min_side=48)]).probs[task][0]
    np.testing.assert_allclose(table.loc[0, f"_probs_{task}"], expected, rtol=0, atol=1e-6)
    with open_dict(loaded.cfg):  # a checkpoint written before the keys existed: full decoding
        del loaded.cfg.data.preprocess["decode"], loaded.cfg.data.preprocess["decode_margin"]
    assert Predictor(loaded).decode_min_side is None
