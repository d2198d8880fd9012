"""The steps of the image table (read, check, balance, classes, split, report) and the one
`data.balance` block: legacy fingerprints pinned to the values of the code before the split into
steps (old checkpoints must keep matching, through `legacy_fingerprint`), old config keys read as
the new ones, and each setting."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_readers import write_celeba, write_deepfashion, write_fashion_products
from fixtures_tables import bmp_table, list_table, pixels_for, to_bmp_bytes, write_bmp
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from fashionlab.data.table.balance import BalanceConfig, balance_config
from fashionlab.errors import ConfigError

TRANSFORMS = {"train": {"_target_": "albumentations.Compose",
                        "transforms": [{"_target_": "albumentations.ToTensorV2"}]}}
TRANSFORMS["eval"] = TRANSFORMS["train"]


def make(root: Path, table: pd.DataFrame, tasks=None, **kwargs):
    return list_table(root, table, TRANSFORMS, tasks, **kwargs)

# Computed with the code before this refactor (image_table.py as one class, fashion_products'
# rare_classes, CelebA's balance_styles) on the same byte-stable fixtures.
PINNED = {
    "table_min_cap": "924953d3a5cc474b61ce68f9796bda7c1898124ea41104012b6468f6ca3f5cfd",
    "table_merge": "68264a5ed282d9227c5e077c338160a5a38828c091686ad920009635949eab7a",
    "table_official": "f75ac4efa4b82490f79644195d4ee97d838ce0b6b0cd11f6dd2492f34ac806d7",
    "products_merge5": "bc57a65370551db3f6acd98986336bd7bb312637fcec44133cbc6502a1e56df9",
    "products_rare2_ignore": "3aefddf89bf474feee70ee961cc6c3cea26ac069d59256066b23d73aef974690",
    "products_rare2_drop_cap": "29c6182c40f0e862e99ca61e85109e4595bc7fe88a86bed8d913ec882fa74d21",
    "deepfashion": "4b64a78e280ba453f03b401e1a3bc2fed783da31186f9d38320bdf87946bb93d",
    "celeba_default": "db34944246b0b77d614d48d5d7368178a09e0a24177a6bd1ffd8ddc03d764084",
    "celeba_cap4": "2aabbf5b9990dc9355e9af0eabd2eaa1810ff8659f14919cf6ffb196b1cd02de",
    "image_folder": "aad42b769041e99c26c3a8a0fadd9cc68b1871e60ef9237f3dc07b184a106032",
    "csv": "b19ec9e8412a8e70185efd58b2a896b85497ee29df6bdff72f03523dcc152052",
}
# The base config's balance block as it was (what an old checkpoint's config holds).
OLD_BALANCE = {"task": None, "min_count": 0, "rare": "drop", "other_class": "other",
               "max_count": None, "sampler": "none"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Byte-stable copies of each reader's fixture."""
    base = tmp_path_factory.mktemp("pinned")
    write_fashion_products(base / "products")
    write_deepfashion(base / "df")
    write_celeba(base / "celeba")
    for name in ("products", "df", "celeba"):
        to_bmp_bytes(base / name)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("bag", "shoe"):
            for i in range(n):
                write_bmp(base / "folder" / split / cls / f"{i}.bmp", pixels_for(f"{split}{cls}{i}"))
    table = bmp_table(base / "csv" / "img", {"shirt": 8, "bag": 7})
    table[["path", "article"]].rename(columns={"article": "label"}).to_csv(
        base / "csv" / "labels.csv", index=False)
    return base


@pytest.mark.parametrize(("name", "balance"), [
    ("table_min_cap", {"min_count": 3, "max_per_class": 6}),
    ("table_min_cap", {"min_count": 3, "max_count": 6}),  # the old key
    ("table_merge", {"min_count": 3, "rare": "merge"}),
    ("table_merge", {"min_count": 3, "rare": "other"}),  # the old name
    ("table_official", None),
])
def test_table_fingerprints_are_pinned(tmp_path, name, balance):
    counts = {"table_min_cap": {"shirt": 20, "bag": 8, "belt": 2},
              "table_merge": {"shirt": 6, "bag": 6, "belt": 1, "hat": 2},
              "table_official": {"shirt": 10, "bag": 10}}[name]
    table = bmp_table(tmp_path, counts)
    kwargs = {"val_size": 0.2, "test_size": 0.2} if name == "table_min_cap" else {}
    if name == "table_official":
        table["split"] = ["test" if i % 5 == 0 else "train" for i in range(len(table))]
        kwargs = {"val_size": 4}
    assert make(tmp_path, table, balance=balance, **kwargs).legacy_fingerprint() == PINNED[name]


def module(compose_cfg, overrides, legacy=None):
    """The data module of a composed config; `legacy` replaces its balance block by the old
    one plus these old keys, as in the config of a checkpoint written before."""
    cfg = compose_cfg(overrides)
    if legacy is not None:
        with open_dict(cfg):
            cfg.data.balance = {**OLD_BALANCE, **legacy.pop("balance", {})}
            for key, value in legacy.items():
                cfg.data[key] = value
    return instantiate(cfg.data, _recursive_=False)


@pytest.mark.parametrize(("name", "new", "old"), [
    ("products_merge5", ["data.balance.min_count=5"], {"rare_classes": {"min_count": 5}}),
    ("products_rare2_ignore", ["data.balance.min_count=2", "data.balance.rare=unknown"],
     {"rare_classes": {"min_count": 2, "action": "ignore"}}),
    ("products_rare2_drop_cap", ["data.balance.min_count=2", "data.balance.rare=drop",
                                 "data.balance.max_per_class=3"],
     {"rare_classes": {"min_count": 2, "action": "drop"}, "balance": {"max_count": 3}}),
])
def test_products_fingerprints_are_pinned(compose_cfg, roots, name, new, old):
    base = ["data=fashion_products", f"data.root={roots / 'products'}", "data.on_bad_image=skip"]
    assert module(compose_cfg, base + new).legacy_fingerprint() == PINNED[name]
    assert module(compose_cfg, base, legacy=old).legacy_fingerprint() == PINNED[name]


def test_celeba_deepfashion_folder_csv_fingerprints_are_pinned(compose_cfg, roots):
    celeba = ["data=celeba_style", f"data.root={roots / 'celeba'}"]
    assert module(compose_cfg, celeba).legacy_fingerprint() == PINNED["celeba_default"]
    assert module(compose_cfg, celeba, legacy={"balance_styles": {"max_per_style": "min"}}
                  ).legacy_fingerprint() == PINNED["celeba_default"]
    cap4 = ["data.balance.max_per_class=4", "data.balance.unlabelled=3"]
    assert module(compose_cfg, celeba + cap4).legacy_fingerprint() == PINNED["celeba_cap4"]
    assert module(compose_cfg, celeba, legacy={"balance_styles": {"max_per_style": 4, "unlabelled": 3}}
                  ).legacy_fingerprint() == PINNED["celeba_cap4"]
    df = module(compose_cfg, ["data=deepfashion", f"data.root={roots / 'df'}",
                              "data.body_parts=[upper,full]", "data.balance.min_count=3",
                              "+data.tasks.texture={kind: multilabel, classes: auto}"])
    assert df.legacy_fingerprint() == PINNED["deepfashion"]
    folder = module(compose_cfg, ["data=image_folder", f"data.root={roots / 'folder'}"])
    assert folder.legacy_fingerprint() == PINNED["image_folder"]
    csv = module(compose_cfg, ["data=csv", f"data.root={roots / 'csv'}", "data.image_dir=img"])
    assert csv.legacy_fingerprint() == PINNED["csv"]


# --- the balance block ---------------------------------------------------------------------------

def test_balance_config_reads_the_old_keys():
    assert balance_config(None) == BalanceConfig()
    assert balance_config({"max_count": 5, "rare": "other"}) == BalanceConfig(max_per_class=5,
                                                                              rare="merge")
    assert balance_config(OLD_BALANCE, rare_classes={"min_count": 20, "action": "ignore"}) == \
        BalanceConfig(min_count=20, rare="unknown", rare_tasks="all")
    assert balance_config(OLD_BALANCE, rare_classes={"min_count": 0}) == BalanceConfig()
    assert balance_config(OLD_BALANCE, balance_styles={}) == \
        BalanceConfig(max_per_class="min", unlabelled=0, cap="all")
    with pytest.raises(ConfigError, match="both set"):
        balance_config({"min_count": 3}, rare_classes={"min_count": 20})
    with pytest.raises(ConfigError, match=r"data\.balance has unknown key\(s\) max_per_style"):
        balance_config({"max_per_style": 3})
    for bad, match in (({"rare": "fold"}, r"data\.balance\.rare='fold'"),
                       ({"cap": "val"}, r"data\.balance\.cap='val'"),
                       ({"max_per_class": 0}, r"data\.balance\.max_per_class=0"),
                       ({"rare_tasks": "some"}, r"data\.balance\.rare_tasks"),
                       ({"sampler": "uniform"}, r"data\.balance\.sampler")):
        with pytest.raises(ConfigError, match=match):
            balance_config(bad)


def two_tasks(root: Path) -> pd.DataFrame:
    table = bmp_table(root, {"shirt": 8, "bag": 8, "belt": 1})
    table["colour"] = ["red"] * 7 + ["blue"] * 8 + ["red", "green"]  # green: the belt only
    return table


TWO = {"article": {"kind": "multiclass", "classes": "auto"},
       "colour": {"kind": "multiclass", "classes": "auto"}}


@pytest.mark.parametrize(("rare_tasks", "rare", "article", "colour"), [
    ("task", "drop", ("bag", "shirt"), ("blue", "red")),
    ("all", "merge", ("bag", "other", "shirt"), ("blue", "other", "red")),
    ("all", "unknown", ("bag", "shirt"), ("blue", "red")),
    ("task", "keep", ("bag", "belt", "shirt"), ("blue", "green", "red")),
])
def test_rare_classes_of_one_or_every_task(tmp_path, rare_tasks, rare, article, colour):
    dm = make(tmp_path, two_tasks(tmp_path), TWO, val_size=0, test_size=0,
              balance={"min_count": 2, "rare": rare, "rare_tasks": rare_tasks})
    assert dm.tasks[0].classes == article and dm.tasks[1].classes == colour
    dm.setup()
    kept = len(dm.splits["train"])
    assert kept == (16 if rare == "drop" else 17)
    report = dm.prepare_table().balance
    assert report["rare_classes"]["article"] == {"belt": 1}
    assert ("colour" in report["rare_classes"]) == (rare_tasks == "all")


def test_cap_before_the_split_on_a_multiclass_task(tmp_path):
    table = bmp_table(tmp_path, {"shirt": 12, "bag": 5, "belt": 3})
    table["split"] = ["test" if i % 4 == 0 else "train" for i in range(len(table))]
    dm = make(tmp_path, table, balance={"max_per_class": "min", "cap": "all"}, val_size=0)
    dm.setup()
    counts = np.bincount(np.concatenate([d.targets["article"] for d in dm.splits.values()]))
    assert counts.tolist() == [3, 3, 3]
    report = dm.prepare_table().balance
    assert report["capped"] == 11 and report["classes"]["shirt"]["capped"] == 9


def test_cap_of_the_train_split_on_a_multilabel_task(tmp_path):
    table = bmp_table(tmp_path, {"a": 6, "b": 6, "c": 6})
    table["style"] = [["x"]] * 10 + [["x", "y"]] * 4 + [["y"]] * 2 + [[]] * 2
    tasks = {"article": {"kind": "multiclass", "classes": "auto"},
             "style": {"kind": "multilabel", "classes": "auto"}}
    dm = make(tmp_path, table, tasks, val_size=0, test_size=0.3,
              balance={"task": "style", "max_per_class": 4})
    dm.setup()
    train = dm.splits["train"].targets["style"]
    assert (train == 1).sum(axis=0).max() <= 4
    assert ((train == 1).sum(axis=1) == 0).sum() >= 1  # images with no style are all kept
    with pytest.raises(ConfigError, match=r"sampler needs a multiclass task"):
        _ = make(tmp_path, table, tasks, balance={"task": "style", "sampler": "weighted"}).tasks


def test_one_report_writer_writes_the_read_report(compose_cfg, roots, tmp_path):
    dm = module(compose_cfg, ["data=fashion_products", f"data.root={roots / 'products'}",
                              "data.on_bad_image=skip", "data.balance.min_count=2"])
    dm.report_dir = str(tmp_path)
    dm.setup()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["balance.csv", "balance.json", "read_report.json", "skipped_images.csv"]
    read = json.loads((tmp_path / "read_report.json").read_text())
    assert len(read["recovered_rows"]) == 2
    balance = json.loads((tmp_path / "balance.json").read_text())
    assert balance["rare_classes"]["masterCategory"] == {"Free Items": 1}
    assert OmegaConf.create(balance["settings"]).rare_tasks == "all"
