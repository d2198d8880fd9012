"""The three readers' data configs train end to end (fast_dev_run, EfficientNet-Lite0 at 32px) on
fixtures in the published formats, and every named experiment composes."""

import json

import pandas as pd
import pytest
from fixtures_readers import (
    PRODUCT_CORRUPT_ID,
    PRODUCT_MISSING_IMAGE_ID,
    write_celeba,
    write_deepfashion,
    write_fashion_products,
)
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from fashionlab.errors import BadImageError, ConfigError
from fashionlab.training.run import prepare_config, train

READER_EXPERIMENTS = ["deepfashion_xception", "products_multitask_resnet50", "face_style_resnet50",
                      "attributes_vgg16"]


def fast_overrides(data: str, root, out_dir) -> list[str]:
    """A seconds-long CPU smoke run of data config `data` on a fixture."""
    return [
        f"data={data}",
        f"data.root={root}",
        "backbone=efficientnet_lite0",
        "data.image_size=32",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "data.num_workers=0",
        "logger=none",
        "trainer=cpu",
        "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"hydra.run.dir={out_dir}",
    ]


@pytest.fixture(scope="module")
def products_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("products")
    write_fashion_products(root)
    return root


@pytest.fixture(scope="module")
def deepfashion_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepfashion")
    write_deepfashion(root)
    return root


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("celeba")
    write_celeba(root)
    return root


@pytest.mark.slow
def test_fashion_products_fast_dev_run(compose_cfg, products_root, tmp_path):
    cfg = compose_cfg([*fast_overrides("fashion_products", products_root, tmp_path),
                       "data.balance.min_count=2", "data.on_bad_image=skip"])
    metrics = train(cfg)
    assert metrics["data_recovered_rows"] == 2 and metrics["data_missing_images"] == 1
    assert metrics["data_skipped_images"] == 1
    report = json.loads((tmp_path / "read_report.json").read_text())
    assert report["missing_images"] == [str(PRODUCT_MISSING_IMAGE_ID)]
    balance = json.loads((tmp_path / "balance.json").read_text())
    assert balance["rare_classes"]["masterCategory"] == {"Free Items": 1}
    skipped = pd.read_csv(tmp_path / "skipped_images.csv")
    assert skipped["path"].str.endswith(f"{PRODUCT_CORRUPT_ID}.jpg").tolist() == [True]
    assert skipped["source"].str.startswith("styles.csv:").all()
    heads = ("masterCategory", "subCategory", "baseColour", "gender")
    assert {f"test/{t}/acc" for t in heads} <= set(metrics)
    datamodule = instantiate(cfg.data, _recursive_=False)
    master = next(t for t in datamodule.tasks if t.name == "masterCategory")
    assert set(master.classes) == {"Apparel", "Accessories", "Footwear", "other"}


@pytest.mark.slow
def test_fashion_products_corrupt_image_is_an_error_by_default(compose_cfg, products_root, tmp_path):
    cfg = compose_cfg(fast_overrides("fashion_products", products_root, tmp_path))
    with pytest.raises(BadImageError, match=rf"{PRODUCT_CORRUPT_ID}\.jpg.*styles\.csv:\d+"):
        train(cfg)


def test_fashion_products_unknown_task_names_the_key(compose_cfg, products_root, tmp_path):
    cfg = compose_cfg([*fast_overrides("fashion_products", products_root, tmp_path),
                       "+data.tasks.colour={kind: multiclass, classes: auto}"])
    datamodule = instantiate(cfg.data, _recursive_=False)
    with pytest.raises(ConfigError, match=r"data\.tasks\.colour"):
        datamodule.setup()


def test_fashion_products_parent_task_from_parent_of(compose_cfg, products_root, tmp_path):
    cfg = compose_cfg([
        *fast_overrides("fashion_products", products_root, tmp_path), "data.on_bad_image=skip",
        "data.balance.min_count=0", "~data.tasks.baseColour", "~data.tasks.gender",
        "~data.tasks.masterCategory", "data.main_task=subCategory", "data.split_by=subCategory",
        "+data.tasks.subCategory.parent=kind",
        "+data.tasks.subCategory.parent_of={Topwear: clothes, Bottomwear: clothes, Watches: other, "
        "Shoes: other, Free Gifts: other}",
        "+data.tasks.kind={kind: multiclass, classes: [clothes, other]}",
    ])
    datamodule = instantiate(cfg.data, _recursive_=False)
    datamodule.setup()
    kind = datamodule.splits["train"].targets["kind"]
    sub = datamodule.splits["train"].targets["subCategory"]
    sub_task = next(t for t in datamodule.tasks if t.name == "subCategory")
    clothes = [sub_task.classes.index(c) for c in ("Topwear", "Bottomwear")]
    assert ((kind == 0) == pd.Series(sub).isin(clothes).to_numpy()).all()


@pytest.mark.slow
def test_deepfashion_fast_dev_run(compose_cfg, deepfashion_root, tmp_path):
    cfg = compose_cfg([
        *fast_overrides("deepfashion", deepfashion_root, tmp_path),
        "data.body_parts=[upper,full]", "data.balance.min_count=3",
        "+data.tasks.texture={kind: multilabel, classes: auto}",
        "+data.tasks.body_part={kind: multiclass, classes: [upper, full]}",
    ])
    metrics = train(cfg)
    assert {"test/category/acc", "test/texture/f1_macro", "test/body_part/acc"} <= set(metrics)
    balance = json.loads((tmp_path / "balance.json").read_text())
    # Button-Down has 2 images, under min_count=3; lower-body categories are not read
    assert balance["classes"]["Button-Down"]["rare"] == "dropped"
    assert set(balance["classes"]) == {"Anorak", "Blouse", "Button-Down", "Dress", "Jumpsuit"}
    assert balance["kept"]["train"] + balance["kept"]["val"] + balance["kept"]["test"] == 6 + 9 + 10 + 4
    datamodule = instantiate(cfg.data, _recursive_=False)
    texture = next(t for t in datamodule.tasks if t.name == "texture")
    assert texture.kind == "multilabel" and set(texture.classes) <= {"abstract chevron", "floral"}


@pytest.mark.slow
def test_celeba_style_fast_dev_run(compose_cfg, celeba_root, tmp_path):
    cfg = compose_cfg([*fast_overrides("celeba_style", celeba_root, tmp_path)])
    metrics = train(cfg)
    assert {"test/style/acc", "test/style/f1_macro"} <= set(metrics)
    report = json.loads((tmp_path / "balance.json").read_text())["cap"]
    assert max(report["positives_after"].values()) <= min(report["positives_before"].values())
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert datamodule.tasks[0].classes == ("formal", "casual", "intellectual")
    assert datamodule.tasks[0].kind == "multilabel"


def test_celeba_style_classes_must_match_the_rules(compose_cfg, celeba_root, tmp_path):
    cfg = compose_cfg([*fast_overrides("celeba_style", celeba_root, tmp_path),
                       "data.tasks.style.classes=[formal,casual]"])
    with pytest.raises(InstantiationException, match=r"data\.tasks\.style\.classes must list the styles"):
        instantiate(cfg.data, _recursive_=False)


@pytest.mark.parametrize("name", READER_EXPERIMENTS)
def test_named_experiments_compose(name, compose_cfg, tmp_path):
    cfg = compose_cfg([f"experiment={name}", "backbone.pretrained=false", f"hydra.run.dir={tmp_path}",
                       "logger=none"])
    prepare_config(cfg)
    assert cfg.task_name == name
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert datamodule.tasks_cfg
    expected = {
        "deepfashion_xception": ("legacy_xception", "DeepFashionDataModule"),
        "products_multitask_resnet50": ("resnet50", "FashionProductsDataModule"),
        "face_style_resnet50": ("resnet50", "CelebAStyleDataModule"),
        "attributes_vgg16": ("vgg16", None),
    }[name]
    assert cfg.backbone.name == expected[0]
    if expected[1]:
        assert type(datamodule).__name__ == expected[1]
    if name == "deepfashion_xception":
        assert list(cfg.data.body_parts) == ["upper", "full"]
        assert (cfg.data.balance.min_count, cfg.data.balance.max_per_class) == (2000, 7000)
        assert len(cfg.model.head.hidden_dims) == 2  # + the output layer: three dense layers
    if name == "products_multitask_resnet50":
        assert set(cfg.data.tasks) == {"masterCategory", "subCategory", "baseColour", "gender"}
        assert cfg.model.head.dropout > 0
    if name == "attributes_vgg16":
        assert cfg.training.freeze_epochs == 5 and cfg.trainer.max_epochs > 5
