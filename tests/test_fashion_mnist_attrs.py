"""Fashion-MNIST with colour and pattern: determinism, balance, the colour and the pattern really
drawn on the garment, configs, and a training run with all four heads."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from fashionlab.data.readers.fashion_mnist import read_fashion_mnist_split
from fashionlab.data.readers.fashion_mnist_attrs import assign_attributes
from fashionlab.errors import ConfigError
from fashionlab.training.run import prepare_config, train

from conftest import SYSTEM_FMNIST, tiny_overrides

ATTRS = "data=fashion_mnist_attrs"


@pytest.fixture
def make_dm(compose_cfg, fmnist_dir, tmp_path):
    def _make(*overrides: str):
        cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), ATTRS, "data.image_size=32",
                           *overrides])
        return instantiate(cfg.data, _recursive_=False)

    return _make


def nearest_palette(images: np.ndarray, grey: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Palette index closest in chromaticity to each image's mean RGB over garment pixels."""
    garment = (grey >= 30)[..., None]
    mean_rgb = (images.astype(np.float64) * garment).sum(axis=(1, 2)) / garment.sum(axis=(1, 2))
    unit = mean_rgb / np.linalg.norm(mean_rgb, axis=1, keepdims=True)
    ref = palette / np.linalg.norm(palette, axis=1, keepdims=True)
    return np.argmax(unit @ ref.T, axis=1)


def classify_pattern(image: np.ndarray, grey: np.ndarray, checked_size: int) -> str:
    """Read the pattern back from the image alone, given the grey garment it was drawn on: the
    ratio image/grey is flat off the pattern and darker on its ink."""
    valid = grey >= 30
    ratio = image.max(axis=-1).astype(np.float64) / np.maximum(grey, 1)
    ink = ratio < 0.7 * np.percentile(ratio[valid], 95)
    frac = ink[valid].mean()
    if frac < 0.03:
        return "solid"
    if frac < 0.3:
        return "dotted"
    purities = []
    for axis in (1, 0):  # each row constant (horizontal stripes) or each column (vertical)
        inside = valid.sum(axis=axis)
        ink_share = (ink & valid).sum(axis=axis) / np.maximum(inside, 1)
        purities.append((np.maximum(ink_share, 1 - ink_share) * inside).sum() / inside.sum())
    if max(purities) > 0.95:
        return "striped"
    s = checked_size
    flips = [(ink[:, s:] != ink[:, :-s])[valid[:, s:] & valid[:, :-s]].mean(),
             (ink[s:] != ink[:-s])[valid[s:] & valid[:-s]].mean()]
    return "checked" if min(flips) > 0.9 else "unknown"


def test_same_attribute_seed_same_arrays_other_seed_other_assignment(make_dm):
    a = make_dm().load_splits()
    b = make_dm().load_splits()
    c = make_dm("data.attribute_seed=1").load_splits()
    for split in ("train", "val", "test"):
        assert a[split][0].shape[1:] == (28, 28, 3) and a[split][0].dtype == np.uint8
        assert np.array_equal(a[split][0], b[split][0])
        for task in ("article", "colour", "pattern"):
            assert np.array_equal(a[split][1][task], b[split][1][task])
    assert np.array_equal(a["test"][1]["article"], c["test"][1]["article"])
    assert not np.array_equal(a["test"][1]["colour"], c["test"][1]["colour"])
    assert not np.array_equal(a["test"][1]["pattern"], c["test"][1]["pattern"])
    assert not np.array_equal(a["test"][0], c["test"][0])


def test_training_seed_moves_the_split_not_the_attributes(make_dm):
    a = make_dm("seed=1").load_splits()
    b = make_dm("seed=2").load_splits()
    assert not np.array_equal(a["val"][0], b["val"][0])
    assert np.array_equal(a["test"][0], b["test"][0])
    assert np.array_equal(a["test"][1]["colour"], b["test"][1]["colour"])


def test_labels_in_range_and_balanced_within_each_article(make_dm):
    dm = make_dm()
    splits = dm.load_splits()
    for split, (_, targets) in splits.items():
        assert targets["colour"].min() >= 0 and targets["colour"].max() < 8, split
        assert targets["pattern"].min() >= 0 and targets["pattern"].max() < 4, split
    # the fixture's official train split (train + val) has 16 images per article: every colour
    # exactly twice and every pattern exactly 4 times per article
    targets = {k: np.concatenate([splits[s][1][k] for s in ("train", "val")])
               for k in ("article", "colour", "pattern")}
    for article in range(10):
        of_article = targets["article"] == article
        assert np.bincount(targets["colour"][of_article], minlength=8).tolist() == [2] * 8
        assert np.bincount(targets["pattern"][of_article], minlength=4).tolist() == [4] * 4
    # colour and pattern are drawn independently: not locked to each other
    joint = np.bincount(targets["colour"] * 4 + targets["pattern"], minlength=32)
    assert (joint > 0).sum() >= 24


def test_each_image_gets_a_uniformly_random_colour():
    articles = np.repeat(np.arange(3), 5)
    first = np.array([assign_attributes(articles, 8, 4, np.random.default_rng(seed))[0][0]
                      for seed in range(1600)])
    counts = np.bincount(first, minlength=8)
    assert counts.min() > 200 * 0.7 and counts.max() < 200 * 1.3, counts


def test_colour_and_pattern_are_drawn_on_the_garment(make_dm, fmnist_dir):
    dm = make_dm()
    images, targets = dm.load_splits()["test"]  # validates, so dm.palette is filled
    grey, _ = read_fashion_mnist_split(fmnist_dir, "test")
    assert np.all(images[grey == 0] == 0), "background must stay black"
    colour = nearest_palette(images, grey, dm.palette)
    assert (colour == targets["colour"]).mean() > 0.95
    names = list(dm.pattern_params)
    read = np.array([classify_pattern(im, g, dm.pattern_params["checked"]["size"])
                     for im, g in zip(images, grey, strict=True)])
    for p, name in enumerate(names):
        assert (read[targets["pattern"] == p] == name).mean() > 0.95, name


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="needs apt package dataset-fashion-mnist")
def test_real_garments_show_their_colour_and_pattern(make_dm):
    dm = make_dm()
    dm.validate()
    grey, articles = read_fashion_mnist_split(SYSTEM_FMNIST, "test")
    grey, articles = grey[:2000], articles[:2000]
    images, colours, patterns = dm.colourise(grey, articles, "test")
    assert (nearest_palette(images, grey, dm.palette) == colours).mean() > 0.95
    read = np.array([classify_pattern(im, g, dm.pattern_params["checked"]["size"])
                     for im, g in zip(images, grey, strict=True)])
    for p, name in enumerate(dm.pattern_params):
        assert (read[patterns == p] == name).mean() > 0.95, name


def test_rgb_items_and_four_tasks(make_dm):
    dm = make_dm()
    dm.setup()
    assert [t.name for t in dm.tasks] == ["article", "category", "colour", "pattern"]
    item = dm.splits["test"][0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert not torch.equal(item["image"][0], item["image"][2])
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["targets"]) == {"article", "category", "colour", "pattern"}
    counts = dm.class_counts("train")
    assert counts["colour"].sum() == counts["pattern"].sum() == len(dm.splits["train"])


@pytest.mark.parametrize(("override", "match"), [
    ("data.tasks.colour.classes=[a,b,c,d,e,f,g,h]", r"data\.tasks\.colour\.classes must list "
                                                    r"the names of data\.palette"),
    ("data.patterns.striped.period=2", r"data\.patterns\.striped: need period >= 4"),
    ("data.palette.red=[300,0,0]", r"data\.palette\.red must be three integers"),
    ("+data.patterns.zigzag={}", r"data\.patterns\.zigzag: unknown pattern"),
])
def test_bad_attribute_config_names_the_key(make_dm, override, match):
    dm = make_dm(override)
    with pytest.raises(ConfigError, match=match):
        dm.setup()


def test_experiment_config_composes(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "experiment=fashion_mnist_attrs_lite0"])
    prepare_config(cfg)
    assert cfg.data._target_.endswith("FashionMNISTAttrsDataModule")
    assert set(cfg.data.tasks) == {"article", "category", "colour", "pattern"}


@pytest.mark.slow
def test_fast_dev_run_trains_all_four_heads(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), ATTRS, "data.image_size=32",
                       "trainer.fast_dev_run=true"])
    metrics = train(cfg)
    for task in ("article", "category", "colour", "pattern"):
        assert 0.0 <= metrics[f"test/{task}/acc"] <= 1.0
    assert len(metrics["data_fingerprint"]) == 64
