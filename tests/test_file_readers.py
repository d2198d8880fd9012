"""The generic file readers on fixtures in their exact formats: image_folder, csv, attributes_csv,
hierarchical_items — counts and labels read, errors naming file and line, and a fast_dev_run train."""

import json

import numpy as np
import pytest
from fixtures_images import (
    HIERARCHY,
    write_attributes_dataset,
    write_csv_dataset,
    write_hierarchy,
    write_image_folder,
    write_tree,
)
from hydra.utils import instantiate

from fashionlab.errors import BadImageError, DataFormatError
from fashionlab.models.hierarchy import full_label
from fashionlab.training.run import train


def overrides(data: str, root, out, *extra: str) -> list[str]:
    return [f"data={data}", f"data.root={root}", "data.image_size=32", "data.batch_size=4",
            "data.eval_batch_size=8", "data.num_workers=0", "logger=none",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            f"hydra.run.dir={out}", *extra]


def datamodule(compose_cfg, data, root, out, *extra):
    cfg = compose_cfg(overrides(data, root, out, *extra))
    dm = instantiate(cfg.data, _recursive_=False)
    dm.report_dir = str(out)
    return dm


def all_labels(dm, task):
    dm.setup()
    return np.concatenate([dm.splits[s].targets[task] for s in ("train", "val", "test")])


def test_image_folder_reads_classes_and_skips_the_corrupt_file(compose_cfg, tmp_path):
    root = write_image_folder(tmp_path / "data")
    with pytest.raises(BadImageError, match=r"broken\.jpg: not an image file"):
        _ = datamodule(compose_cfg, "image_folder", root, tmp_path / "a").tasks
    dm = datamodule(compose_cfg, "image_folder", root, tmp_path / "b", "data.on_bad_image=skip")
    assert dm.tasks[0].name == "label" and dm.tasks[0].classes == ("bag", "shirt", "shoe")
    assert np.bincount(all_labels(dm, "label")).tolist() == [8, 8, 8]
    skipped = (tmp_path / "b" / "skipped_images.csv").read_text().splitlines()
    assert len(skipped) == 2 and skipped[1].startswith("shirt/broken.jpg,")


def test_image_folder_official_split(compose_cfg, tmp_path):
    root = write_image_folder(tmp_path / "data", official_split=True)
    dm = datamodule(compose_cfg, "image_folder", root, tmp_path / "o", "data.val_size=3")
    dm.setup()
    assert {s: len(d) for s, d in dm.splits.items()} == {"train": 15, "val": 3, "test": 6}
    assert all("/test/" in p for p in dm.splits["test"].paths)


def test_csv_reads_labels_lists_and_split(compose_cfg, tmp_path):
    root = write_csv_dataset(tmp_path / "data")
    extra = ["data.split_column=split", "+data.columns.label=category", "data.image_dir=images",
             "+data.tasks.colours={kind: multilabel, classes: auto}"]
    with pytest.raises(BadImageError, match=r"missing_99\.jpg: file not found \[labels\.csv:26\] "
                                            r"\(and 1 more"):
        _ = datamodule(compose_cfg, "csv", root, tmp_path / "a", *extra).tasks
    dm = datamodule(compose_cfg, "csv", root, tmp_path / "b", *extra, "data.on_bad_image=skip")
    assert [t.classes for t in dm.tasks] == [("bag", "shirt", "shoe"), ("blue", "green", "red")]
    dm.setup()
    assert len(dm.splits["test"]) == 4  # rows 0, 6, 12, 18 of the official split
    assert len(dm.splits["train"]) + len(dm.splits["val"]) == 20
    colours = all_labels(dm, "colours")
    assert len(colours) == 24 and (colours == -1).all(axis=1).sum() == 5  # empty cells: unknown
    assert colours[colours[:, 0] >= 0].sum(axis=0).tolist() == [9, 9, 14]  # blue, green, red
    skipped = (tmp_path / "b" / "skipped_images.csv").read_text()
    assert "labels.csv:26" in skipped and "labels.csv:27" in skipped


def test_csv_header_column_and_class_errors(compose_cfg, tmp_path):
    root = write_csv_dataset(tmp_path / "data")
    with pytest.raises(DataFormatError, match=r"labels\.csv:1: header has no column 'label'; "
                                              r"columns are 'path', 'category'"):
        _ = datamodule(compose_cfg, "csv", root, tmp_path / "a").tasks
    with pytest.raises(DataFormatError, match=r"labels\.csv:1: header has no column 'colour'"):
        _ = datamodule(compose_cfg, "csv", root, tmp_path / "a", "+data.columns.label=colour").tasks
    (root / "bad.csv").write_text("file,category\na.jpg,shirt\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:1: header has no column 'path'"):
        _ = datamodule(compose_cfg, "csv", root, tmp_path / "a", "data.csv_file=bad.csv",
                       "+data.columns.label=category").tasks
    with pytest.raises(DataFormatError, match=r"labels\.csv:4: unknown class 'bag' for task "
                                              r"'label'"):
        _ = datamodule(compose_cfg, "csv", root, tmp_path / "a", "+data.columns.label=category",
                       "data.tasks.label.classes=[shirt,shoe]", "data.image_dir=images").tasks


def test_attributes_multi_valued_cells(compose_cfg, tmp_path):
    root = write_attributes_dataset(tmp_path / "data")
    dm = datamodule(compose_cfg, "attributes_csv", root, tmp_path / "a")
    by_name = {t.name: t for t in dm.tasks}
    assert by_name["fabric"].classes == ("cotton", "denim", "linen", "silk")
    assert by_name["style"].classes == ("casual", "formal", "sporty")
    assert by_name["pattern"].kind == "multiclass" and by_name["shape"].num_classes == 2
    fabric = all_labels(dm, "fabric")
    assert (fabric == -1).all(axis=1).sum() == 4  # empty cells: unknown by default
    known = fabric[fabric[:, 0] >= 0]
    assert known.sum(axis=0).tolist() == [15, 5, 5, 5]  # cotton in "cotton|linen", "cotton", "silk;cotton"
    dm = datamodule(compose_cfg, "attributes_csv", root, tmp_path / "b", "data.empty=none")
    assert (all_labels(dm, "fabric") == -1).sum() == 0
    text = (root / "attributes.csv").read_text().replace(",striped,", ",striped|floral,", 1)
    (root / "attributes.csv").write_text(text)
    with pytest.raises(DataFormatError, match=r"attributes\.csv:3: attribute 'pattern' .* several "
                                              r"values"):
        _ = datamodule(compose_cfg, "attributes_csv", root, tmp_path / "c").tasks


def test_hierarchical_items_tasks_and_parents(compose_cfg, tmp_path):
    root = write_hierarchy(tmp_path / "data")
    with pytest.raises(BadImageError, match=r"cut\.jpg: corrupt or truncated"):
        _ = datamodule(compose_cfg, "hierarchical_items", root, tmp_path / "a").tasks
    dm = datamodule(compose_cfg, "hierarchical_items", root, tmp_path / "b",
                    "data.on_bad_image=skip")
    primary, gender, item = dm.tasks
    assert primary.classes == ("bags", "glasses", "shoes", "trousers")
    assert gender.classes == ("female", "male")
    assert item.classes == ("bags/other", "jeans", "reading", "sandals", "shoes/other",
                            "sneakers", "sunglasses")
    assert item.parent == "primary" and item.parent_of["jeans"] == "trousers"
    assert item.parent_of["shoes/other"] == "shoes" and item.parent_of["sunglasses"] == "glasses"
    labels = {t.name: all_labels(dm, t.name) for t in dm.tasks}
    assert len(labels["primary"]) == sum(HIERARCHY.values())
    assert (labels["gender"] == -1).sum() == 5 + 4 + 4  # glasses and bags have no gender folder
    assert np.bincount(labels["item"]).tolist() == [4, 8, 4, 5, 3, 5, 5]
    names = {"primary": "shoes", "gender": "female", "item": "shoes/other"}
    assert full_label(dm.tasks, names) == "shoes-female-other"
    assert full_label(dm.tasks, {"primary": "glasses", "gender": None,
                                 "item": "sunglasses"}) == "glasses-sunglasses"


def test_hierarchy_without_gender_folders_drops_the_task(compose_cfg, tmp_path):
    root = tmp_path / "data"
    write_tree(root, {"glasses/sunglasses": 4, "glasses/reading": 4, "bags/tote": 4})
    dm = datamodule(compose_cfg, "hierarchical_items", root, tmp_path / "a")
    assert [t.name for t in dm.tasks] == ["primary", "item"]


@pytest.mark.parametrize("data, make, extra", [
    ("image_folder", write_image_folder, ["data.on_bad_image=skip"]),
    ("csv", write_csv_dataset, ["data.on_bad_image=skip", "data.image_dir=images",
                                "+data.columns.label=category", "data.split_column=split",
                                "+data.tasks.colours={kind: multilabel, classes: auto}"]),
    ("attributes_csv", write_attributes_dataset, ["data.balance.sampler=weighted"]),
])
@pytest.mark.slow
def test_fast_dev_run_train(data, make, extra, compose_cfg, tmp_path):
    root = make(tmp_path / "data")
    cfg = compose_cfg(overrides(data, root, tmp_path / "run", "trainer.fast_dev_run=true", *extra))
    metrics = train(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    main = cfg.data.main_task
    assert f"test/{main}/acc" in saved and len(saved["data_fingerprint"]) == 64
    assert saved["data_skipped_images"] == metrics["data_skipped_images"]
    assert (tmp_path / "run" / "balance.json").is_file()


@pytest.mark.slow
def test_hierarchical_items_experiment_trains(compose_cfg, tmp_path):
    root = write_hierarchy(tmp_path / "data")
    cfg = compose_cfg([*overrides("hierarchical_items", root, tmp_path / "run",
                                  "data.on_bad_image=skip", "trainer.max_epochs=1",
                                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                                  "trainer.limit_test_batches=2", "data.balance.min_count=0"),
                       "experiment=hierarchical_items"])
    assert cfg.task_name == "hierarchical_items" and cfg.data.image_size == 32
    metrics = train(cfg)
    assert {"test/item/acc", "test/item/acc_constrained", "test/gender/acc"} <= set(metrics)
    assert metrics["data_skipped_images"] == 1
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    skipped = (tmp_path / "run" / "skipped_images.csv").read_text()
    assert "bags/other/cut.jpg" in skipped
