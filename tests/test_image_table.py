"""The shared machinery of file-based datasets: checks, bad files, balancing, sampler, splits,
classes from the data, reports and fingerprint — on real image files."""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_images import colour_for, noisy, save_image, write_garbage, write_truncated_jpeg
from fixtures_tables import list_table

from fashionlab.errors import BadImageError, ConfigError, DataFormatError

TRANSFORMS = {"train": {"_target_": "albumentations.Compose", "transforms": [
    {"_target_": "albumentations.Resize", "height": 16, "width": 16},
    {"_target_": "albumentations.ToTensorV2"}]}}
TRANSFORMS["eval"] = TRANSFORMS["train"]


def make(root: Path, table: pd.DataFrame, tasks=None, **kwargs):
    return list_table(root, table, TRANSFORMS, tasks, **kwargs)


def images(root: Path, counts: dict[str, int], ext: str = ".png") -> pd.DataFrame:
    """Real files root/<class>_<i><ext>, one row each."""
    rows = []
    for cls, n in counts.items():
        for i in range(n):
            name = f"{cls}_{i}{ext}"
            save_image(root / name, noisy(colour_for(cls), i))
            rows.append({"path": name, "article": cls, "source": f"list.csv:{len(rows) + 2}"})
    return pd.DataFrame(rows)


def test_auto_classes_counts_and_item_access(tmp_path):
    dm = make(tmp_path, images(tmp_path, {"shirt": 6, "bag": 5, "shoe": 4}))
    assert dm.tasks[0].classes == ("bag", "shirt", "shoe")
    dm.setup()
    assert sum(len(ds) for ds in dm.splits.values()) == 15
    ds = dm.splits["train"]
    item = ds[0]
    assert item["image"].shape == (3, 16, 16)
    cls = dm.tasks[0].classes[int(item["targets"]["article"])]
    info = ds.item_info(0)
    assert Path(info["path"]).name.startswith(cls) and info["index"] == 0
    assert ds.raw_image(0).dtype == np.uint8 and ds.raw_image(0).shape[2] == 3


def test_bad_files_stop_the_build_naming_the_file(tmp_path):
    table = images(tmp_path, {"shirt": 4, "bag": 4})
    write_truncated_jpeg(tmp_path / "cut.jpg")
    extra = pd.DataFrame([{"path": "cut.jpg", "article": "bag", "source": "list.csv:99"}])
    dm = make(tmp_path, pd.concat([table, extra], ignore_index=True))
    with pytest.raises(BadImageError, match=r"cut\.jpg: corrupt or truncated .*list\.csv:99.*"
                                            r"data\.on_bad_image=skip"):
        _ = dm.tasks


def test_skip_lists_and_counts_bad_files(tmp_path, caplog):
    table = images(tmp_path, {"shirt": 5, "bag": 5})
    write_garbage(tmp_path / "junk.png")
    write_truncated_jpeg(tmp_path / "cut.jpg")
    extra = pd.DataFrame([{"path": p, "article": "bag", "source": f"list.csv:{90 + i}"}
                          for i, p in enumerate(["junk.png", "missing.jpg", "cut.jpg"])])
    dm = make(tmp_path, pd.concat([table, extra], ignore_index=True), on_bad_image="skip")
    dm.report_dir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO):
        dm.setup()
    assert sum(len(ds) for ds in dm.splits.values()) == 10
    skipped = pd.read_csv(tmp_path / "run" / "skipped_images.csv")
    assert skipped["path"].tolist() == ["junk.png", "missing.jpg", "cut.jpg"]
    assert skipped["source"].tolist() == ["list.csv:90", "list.csv:91", "list.csv:92"]
    assert skipped["reason"].str.contains("not an image|not found|truncated").all()
    assert "skipped 3 bad image file(s) of 13" in caplog.text
    assert dm.data_stats()["data_skipped_images"] == 3


def test_min_count_drop_and_max_count_cap_are_reported(tmp_path, caplog):
    table = images(tmp_path, {"shirt": 20, "bag": 8, "belt": 2})
    dm = make(tmp_path, table, balance={"min_count": 3, "max_count": 6}, val_size=0.2,
              test_size=0.2)
    dm.report_dir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO):
        dm.setup()
    assert dm.tasks[0].classes == ("bag", "shirt")
    train = dm.splits["train"].targets["article"]
    counts = np.bincount(train, minlength=2)
    report = json.loads((tmp_path / "run" / "balance.json").read_text())
    bags = report["classes"]["bag"]
    assert counts.tolist() == [8 - bags["val"] - bags["test"], 6]
    assert bags["capped"] == 0 and counts[0] < 6
    assert report["images_listed"] == 30 and report["dropped_rare"] == 2
    shirts = report["classes"]["shirt"]
    assert shirts["images"] == 20 and shirts["train"] == 6
    assert shirts["capped"] == 20 - shirts["val"] - shirts["test"] - 6
    assert report["capped"] == shirts["capped"] + report["classes"]["bag"]["capped"]
    assert report["classes"]["belt"]["rare"] == "dropped"
    assert report["kept"]["train"] == counts.sum()
    assert sum(report["kept"].values()) == 30 - 2 - report["capped"]
    csv = pd.read_csv(tmp_path / "run" / "balance.csv")
    assert set(csv["class"]) == {"bag", "shirt", "belt"}
    assert "2 rare-class image(s) dropped" in caplog.text
    assert f"{report['capped']} train image(s) capped" in caplog.text


def test_rare_classes_merged_into_other(tmp_path):
    table = images(tmp_path, {"shirt": 6, "bag": 6, "belt": 1, "hat": 2})
    dm = make(tmp_path, table, balance={"min_count": 3, "rare": "other"})
    assert dm.tasks[0].classes == ("bag", "other", "shirt")
    dm.setup()
    labels = np.concatenate([ds.targets["article"] for ds in dm.splits.values()])
    assert (labels == 1).sum() == 3
    explicit = {"article": {"kind": "multiclass", "classes": ["shirt", "bag", "belt", "hat"]}}
    with pytest.raises(ConfigError, match="needs class 'other'"):
        _ = make(tmp_path, table, explicit, balance={"min_count": 3, "rare": "other"}).tasks


def test_weighted_sampler_balances_batches(tmp_path):
    table = images(tmp_path, {"shirt": 32, "bag": 6})
    dm = make(tmp_path, table, balance={"sampler": "weighted"}, val_size=0, test_size=2)
    dm.setup()
    labels = dm.splits["train"].targets["article"]
    assert (labels == 0).mean() < 0.2  # bags are rare in the data
    sampler = dm.train_dataloader().sampler
    drawn = np.concatenate([labels[list(sampler)] for _ in range(20)])
    assert 0.4 < (drawn == 0).mean() < 0.6
    again = make(tmp_path, table, balance={"sampler": "weighted"}, val_size=0, test_size=2)
    again.setup()
    assert list(again.train_dataloader().sampler) == list(make_sampler_once(table, tmp_path))
    plain = make(tmp_path, table, val_size=0, test_size=2)
    plain.setup()
    assert isinstance(plain.train_dataloader().sampler, torch.utils.data.RandomSampler)


def make_sampler_once(table, root):
    dm = make(root, table, balance={"sampler": "weighted"}, val_size=0, test_size=2)
    dm.setup()
    return dm.train_dataloader().sampler


def test_official_split_is_used_and_val_carved_from_train(tmp_path):
    table = images(tmp_path, {"shirt": 10, "bag": 10})
    table["split"] = ["test" if i % 5 == 0 else "train" for i in range(len(table))]
    dm = make(tmp_path, table, val_size=4)
    dm.setup()
    assert len(dm.splits["test"]) == 4 and len(dm.splits["val"]) == 4
    assert len(dm.splits["train"]) == 12
    test_paths = {Path(p).name for p in dm.splits["test"].paths}
    assert test_paths == {table.at[i, "path"] for i in range(0, 20, 5)}
    table.loc[3, "split"] = "holdout"
    with pytest.raises(DataFormatError, match=r"list\.csv:5: split is 'holdout'"):
        _ = make(tmp_path, table).tasks


def test_seeded_stratified_split(tmp_path):
    table = images(tmp_path, {"shirt": 20, "bag": 10})
    splits = []
    for seed in (0, 0, 1):
        dm = make(tmp_path, table, seed=seed, val_size=0.2, test_size=0.2)
        dm.setup()
        splits.append(sorted(dm.splits["val"].paths))
        val_labels = dm.splits["val"].targets["article"]
        assert np.bincount(val_labels).tolist() == [2, 4]  # bag, shirt: proportional
    assert splits[0] == splits[1] and splits[0] != splits[2]


def test_unknown_class_names_the_row_and_task(tmp_path):
    table = images(tmp_path, {"shirt": 3, "bag": 3})
    tasks = {"article": {"kind": "multiclass", "classes": ["shirt", "shoe"]}}
    with pytest.raises(DataFormatError, match=r"list\.csv:5: unknown class 'bag' for task "
                                              r"'article'; data\.tasks\.article\.classes"):
        _ = make(tmp_path, table, tasks).tasks


def test_missing_task_column_and_parent_derived_from_child(tmp_path):
    table = images(tmp_path, {"sandal": 4, "jeans": 4})
    tasks = {"article": {"kind": "multiclass", "classes": "auto"},
             "colour": {"kind": "multiclass", "classes": "auto"}}
    with pytest.raises(DataFormatError, match="no labels for task 'colour'"):
        _ = make(tmp_path, table, tasks).tasks
    tasks = {"article": {"kind": "multiclass", "classes": "auto", "parent": "category",
                         "parent_of": {"sandal": "shoes", "jeans": "trousers"}},
             "category": {"kind": "multiclass", "classes": ["shoes", "trousers"]}}
    dm = make(tmp_path, table, tasks)
    dm.setup()
    ds = dm.splits["train"]
    for article, category in zip(ds.targets["article"], ds.targets["category"], strict=True):
        assert dm.tasks[1].classes[category] == dm.tasks[0].parent_of[dm.tasks[0].classes[article]]


def test_parent_of_auto_and_conflicts(tmp_path):
    table = images(tmp_path, {"sandal": 3, "jeans": 3})
    table["category"] = ["shoes" if p.startswith("sandal") else "trousers" for p in table["path"]]
    tasks = {"category": {"kind": "multiclass", "classes": "auto"},
             "article": {"kind": "multiclass", "classes": "auto", "parent": "category",
                         "parent_of": "auto"}}
    assert dict(make(tmp_path, table, tasks).tasks[1].parent_of) == {"sandal": "shoes",
                                                                     "jeans": "trousers"}
    table.loc[4, "category"] = "shoes"
    with pytest.raises(DataFormatError, match=r"list\.csv:6: class 'jeans' of task 'article' has "
                                              r"parent 'shoes', but list\.csv:5"):
        _ = make(tmp_path, table, tasks).tasks


def test_multilabel_unknown_rows_are_ignored(tmp_path):
    table = images(tmp_path, {"shirt": 4, "bag": 4})
    table["colour"] = [["red", "blue"], ["red"], None, [], ["blue"], None, ["red"], ["green"]]
    tasks = {"article": {"kind": "multiclass", "classes": "auto"},
             "colour": {"kind": "multilabel", "classes": "auto"}}
    dm = make(tmp_path, table, tasks, val_size=0, test_size=2)
    assert dm.tasks[1].classes == ("blue", "green", "red")
    dm.setup()
    rows = np.concatenate([ds.targets["colour"] for ds in dm.splits.values()])
    assert (rows == -1).all(axis=1).sum() == 2 and (rows.sum(axis=1) == 0).sum() == 1
    counts = dm.class_counts("train")["colour"]
    assert counts.sum() == (dm.splits["train"].targets["colour"] == 1).sum()


def test_fingerprint_follows_files_labels_and_split(tmp_path):
    table = images(tmp_path, {"shirt": 5, "bag": 5})

    def fp(t, **kw):
        return make(tmp_path, t, **kw).fingerprint()

    base = fp(table)
    assert fp(table) == base and len(base) == 64
    assert fp(table, seed=3) != base  # another split
    relabelled = table.copy()
    relabelled.loc[0, "article"] = "bag"
    assert fp(relabelled) != base
    save_image(tmp_path / table.at[1, "path"], noisy((0, 0, 0), 99))  # new content, same name
    assert fp(table) != base


def test_imposed_tasks_fix_the_classes(tmp_path):
    """A checkpoint's classes, set before setup, are used instead of those found in the data."""
    table = images(tmp_path, {"shirt": 4, "bag": 4})
    trained = make(tmp_path, images(tmp_path, {"shirt": 4, "bag": 4, "shoe": 4})).tasks
    dm = make(tmp_path, table)
    dm.tasks = trained
    dm.setup()
    assert dm.tasks[0].classes == ("bag", "shirt", "shoe")
    labels = np.concatenate([ds.targets["article"] for ds in dm.splits.values()])
    assert sorted(np.bincount(labels, minlength=3).tolist()) == [0, 4, 4]
