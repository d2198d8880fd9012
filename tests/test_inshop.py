"""DeepFashion In-shop Clothes Retrieval: the reader on a fixture in the published format (splits,
tasks, retrieval labels, box crop, errors), Recall@k against a brute-force reference, the data's
evaluation protocol, and a tiny train.py + evaluate.py run reporting the official figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_inshop import (
    BOX,
    ITEMS,
    SIZE,
    bbox_lines,
    image_names,
    partition_lines,
    write_inshop,
    write_lines,
)
from fixtures_runs import compose_config
from omegaconf import OmegaConf

from fashionlab.data.readers.deepfashion_inshop import DeepFashionInShopDataModule, read_partition
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError
from fashionlab.evaluation.protocol import check_protocol, with_data_protocol
from fashionlab.evaluation.run import evaluate  # also registers the resolver of evaluate.yaml's run dir
from fashionlab.retrieval.metrics import recall_at_k, relevance, retrieval_metrics

TASKS = {"item": {"kind": "multiclass", "classes": "auto"},
         "clothes_type": {"kind": "multiclass", "classes": "auto"}}
TRANSFORMS = {"train": {"_target_": "albumentations.Compose", "transforms": [
    {"_target_": "albumentations.Resize", "height": 16, "width": 16},
    {"_target_": "albumentations.pytorch.ToTensorV2"}]}}


@pytest.fixture(scope="module")
def inshop_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inshop")
    write_inshop(root)
    return root


def datamodule(root: Path, **kwargs) -> DeepFashionInShopDataModule:
    settings = {"val_items": 2, "main_task": "clothes_type", "split_by": "clothes_type", **kwargs}
    dm = DeepFashionInShopDataModule(root=str(root), tasks=TASKS, transforms=TRANSFORMS, image_size=16,
                                     **settings)
    dm.setup()
    return dm


def test_fixture_is_in_the_published_layout(inshop_root):
    lines = (inshop_root / "Eval" / "list_eval_partition.txt").read_text().splitlines()
    assert lines[0] == "21" and lines[1] == "image_name item_id evaluation_status"
    assert "   id_00000002 train" in lines[2]
    assert (inshop_root / "Img" / "img" / "WOMEN" / "Dresses" / "id_00000002" / "01_1_front.jpg").is_file()
    items = (inshop_root / "Anno" / "list_item_inshop.txt").read_text().splitlines()
    assert items[:2] == ["7", "id_00000001"]


def test_splits_tasks_and_retrieval_labels(inshop_root):
    dm = datamodule(inshop_root)
    sizes = {name: len(ds) for name, ds in dm.splits.items()}
    assert sizes == {"train": 6, "val": 6, "test": 3, "gallery": 6}
    tasks = {t.name: t for t in dm.tasks}
    assert tasks["clothes_type"].classes == ("Denim", "Dresses")
    # the item head knows the train items only: two of the four (the other two are val items)
    train_items = {Path(p).parent.name for p in dm.splits["train"].rel_paths}
    val_items = {Path(p).parent.name for p in dm.splits["val"].rel_paths}
    assert set(tasks["item"].classes) == train_items and len(train_items) == 2
    assert not train_items & val_items and len(val_items) == 2
    # one val item per clothes type (stratified), and no item label on val/test/gallery images
    assert {Path(p).parts[-3] for p in dm.splits["val"].rel_paths} == {"Dresses", "Denim"}
    for split in ("val", "test", "gallery"):
        assert (dm.splits[split].targets["item"] == -1).all()
    # every image keeps its item id as the retrieval label; query items are the gallery's items
    (item_label,) = dm.retrieval_tasks()
    names = np.array(item_label.classes)
    query_items = names[dm.splits["test"].retrieval_targets["item"]]
    gallery_items = names[dm.splits["gallery"].retrieval_targets["item"]]
    assert sorted(query_items) == ["id_00000005", "id_00000006", "id_00000007"]
    assert sorted(set(gallery_items)) == sorted(query_items)
    for split in ("test", "gallery"):
        assert [Path(p).parent.name for p in dm.splits[split].rel_paths] == list(
            names[dm.splits[split].retrieval_targets["item"]])
    assert set(dm.data_identity()["splits"]) == {"val", "test", "gallery"}
    assert dm.read_report["items_listed"] == 7 and dm.read_report["query_images"] == 3


def test_val_carve_is_seeded(inshop_root):
    def val_items(seed: int) -> set[str]:
        dm = datamodule(inshop_root, seed=seed)
        return {Path(p).parent.name for p in dm.splits["val"].rel_paths}

    assert val_items(0) == val_items(0)
    assert len({frozenset(val_items(s)) for s in range(6)}) > 1


def test_val_items_zero_carves_images_of_train_items(inshop_root):
    dm = datamodule(inshop_root, val_items=0, val_size=4, split_by="item")
    assert len(dm.splits["val"]) == 4 and len(dm.splits["train"]) == 8
    assert (dm.splits["val"].targets["item"] >= 0).all()  # val images of train items keep their class
    assert len(dm.tasks[0].classes) == 4


def test_images_at_the_root_and_missing_images_folder(tmp_path):
    write_inshop(tmp_path / "flat", images_parent="")
    assert len(datamodule(tmp_path / "flat").splits["gallery"]) == 6
    (tmp_path / "none" / "Eval").mkdir(parents=True)
    write_lines(tmp_path / "none" / "Eval" / "list_eval_partition.txt", partition_lines(image_names()))
    with pytest.raises(DataNotFoundError, match=r"Img/img \(as published\)"):
        datamodule(tmp_path / "none")


def test_crop_to_the_box(inshop_root):
    whole, cropped = datamodule(inshop_root), datamodule(inshop_root, crop=True)
    x1, y1, x2, y2 = BOX
    assert whole.splits["gallery"].raw_image(0).shape == (SIZE, SIZE, 3)
    assert cropped.splits["gallery"].raw_image(0).shape == (y2 - y1, x2 - x1, 3)
    expected = whole.splits["gallery"].raw_image(0)[y1:y2, x1:x2]
    assert np.array_equal(cropped.splits["gallery"].raw_image(0), expected)
    assert whole.fingerprint() != cropped.fingerprint()


def test_box_beyond_the_image_is_clipped(tmp_path):
    write_inshop(tmp_path)
    rows = image_names()
    lines = bbox_lines(rows)
    lines[2] = lines[2].rsplit("  ", 4)[0] + "  010  010  300  300"  # first image's box past the edge
    write_lines(tmp_path / "Anno" / "list_bbox_inshop.txt", lines)
    dm = datamodule(tmp_path, crop=True)
    rel = "Img/" + rows[0][0]
    ds = next(d for d in dm.splits.values() if rel in d.rel_paths)
    image = ds.raw_image(ds.rel_paths.index(rel))
    assert image.shape == (SIZE - 10, SIZE - 10, 3)


def corrupt(tmp_path: Path, edit) -> Path:
    """A fixture whose partition file `edit(lines)` changed."""
    write_inshop(tmp_path)
    lines = partition_lines(image_names())
    edit(lines)
    write_lines(tmp_path / "Eval" / "list_eval_partition.txt", lines)
    return tmp_path


def test_duplicate_row_names_both_lines(tmp_path):
    def duplicate(lines):
        lines.append(lines[5])
        lines[0] = str(len(lines) - 2)

    root = corrupt(tmp_path, duplicate)
    with pytest.raises(DataFormatError, match=r"list_eval_partition\.txt:24: image .* listed twice "
                                              r"\(lines 6 and 24\)"):
        datamodule(root)


def test_unknown_status_names_the_line(tmp_path):
    def status(lines):
        lines[4] = lines[4].replace("train", "val")

    with pytest.raises(DataFormatError, match=r"list_eval_partition\.txt:5: evaluation status 'val' "
                                              r"is not one of train, query, gallery"):
        datamodule(corrupt(tmp_path, status))


def test_count_line_and_item_folder_mismatches(tmp_path):
    def count(lines):
        lines[0] = "20"

    with pytest.raises(DataFormatError, match=r"list_eval_partition\.txt:1: the count line declares 20"):
        read_partition(corrupt(tmp_path / "a", count) / "Eval" / "list_eval_partition.txt")

    def item(lines):
        lines[3] = lines[3].replace("id_00000002 train", "id_00000004 train")

    with pytest.raises(DataFormatError, match=r":4: item_id id_00000004 but the image .* item id_00000002"):
        datamodule(corrupt(tmp_path / "b", item))


def test_item_in_train_and_gallery_is_an_error(tmp_path):
    def leak(lines):
        lines[2] = lines[2].replace("train", "gallery")

    with pytest.raises(DataFormatError, match=r"item id_00000002 has train images and query/gallery"):
        datamodule(corrupt(tmp_path, leak))


def test_list_files_errors(tmp_path):
    write_inshop(tmp_path)
    rows = image_names()
    write_lines(tmp_path / "Anno" / "list_bbox_inshop.txt", bbox_lines(rows[:-1]))
    with pytest.raises(DataFormatError,
                       match=r"1 image\(s\) .* have no box, e\.g\. img/WOMEN/Dresses/id_00000007"):
        datamodule(tmp_path, crop=True)
    lines = bbox_lines(rows)
    lines[3] = lines[3].replace("020  022", "001  022")
    write_lines(tmp_path / "Anno" / "list_bbox_inshop.txt", lines)
    with pytest.raises(DataFormatError, match=r"list_bbox_inshop\.txt:4: box \(2, 3, 1, 22\) is empty"):
        datamodule(tmp_path, crop=True)
    write_lines(tmp_path / "Anno" / "list_item_inshop.txt", ["6", *sorted(i for *_, i, _ in ITEMS)[:-1]])
    with pytest.raises(DataFormatError, match=r"1 item id\(s\) not in .*list_item_inshop\.txt, e\.g\. "
                                              r"id_00000007"):
        datamodule(tmp_path)


def brute_force_recall(query_labels, gallery_labels, distances, k) -> float:
    """Sort each query's gallery by distance; a hit when one of the first k has the query's label."""
    hits = []
    for q, row in enumerate(distances):
        order = sorted(range(len(row)), key=lambda j: (row[j], j))
        hits.append(any(gallery_labels[j] == query_labels[q] for j in order[:k]))
    return float(np.mean(hits))


def test_recall_at_k_matches_brute_force():
    rng = np.random.default_rng(0)
    query_labels, gallery_labels = rng.integers(0, 30, 40), rng.integers(0, 30, 120)
    gallery_labels[:30] = np.arange(30)  # every query has at least one relevant gallery image
    centres = rng.normal(size=(30, 8))  # items as noisy clusters: some hits at 1, more at 50
    query = centres[query_labels] + rng.normal(scale=1.0, size=(40, 8))
    gallery = centres[gallery_labels] + rng.normal(scale=1.0, size=(120, 8))
    distances = ((query[:, None] - gallery[None]) ** 2).sum(-1)
    ids = np.argsort(distances, axis=1, kind="stable")[:, :50]
    ks = (1, 10, 20, 30, 40, 50)
    per_query = recall_at_k(relevance(query_labels, gallery_labels, ids), ks)
    r = np.bincount(gallery_labels, minlength=30)[query_labels]
    metrics = retrieval_metrics(query_labels, gallery_labels, ids, r, ks)
    for k in ks:
        expected = brute_force_recall(query_labels, gallery_labels, distances, k)
        assert per_query[k].mean() == pytest.approx(expected)
        assert metrics[f"recall_at_{k}"] == pytest.approx(expected)
    assert 0 < metrics["recall_at_1"] < metrics["recall_at_10"] < metrics["recall_at_50"] <= 1


def test_protocol_defaults_from_the_data_config(inshop_root):
    cfg = compose_config("evaluate", ["ckpt_path=x.ckpt"])
    data = OmegaConf.create({"evaluation": {"query": "test", "gallery": "gallery", "recall_at": [1, 10, 20]}})
    resolved = with_data_protocol(cfg, data)
    assert (resolved.query, resolved.gallery) == ("test", "gallery")
    assert list(resolved.retrieval.ks) == [1, 5, 10, 20] and list(resolved.retrieval.recall_at) == [1, 10, 20]
    plain = with_data_protocol(cfg, OmegaConf.create({}))
    assert (plain.query, plain.gallery, list(plain.retrieval.recall_at)) == ("test", "train", [])
    override = compose_config("evaluate", ["ckpt_path=x.ckpt", "gallery=val", "retrieval.recall_at=[2]"])
    resolved = with_data_protocol(override, data)
    assert resolved.gallery == "val" and list(resolved.retrieval.recall_at) == [2]
    dm = datamodule(inshop_root)
    with pytest.raises(ConfigError, match=r"retrieval\.recall_at=\[1, 10, 20\] asks for 20 .* holds 6"):
        check_protocol(with_data_protocol(cfg, data), dm)
    nosuch = compose_config("evaluate", ["ckpt_path=x", "query=nosuch"])
    with pytest.raises(ConfigError, match=r"query='nosuch': expected one of train, val, test, gallery"):
        check_protocol(with_data_protocol(nosuch, data), dm)


@pytest.mark.slow
def test_train_and_evaluate_with_the_official_protocol(inshop_root, tmp_path):
    from fashionlab.training.run import train

    run = tmp_path / "run"
    # The named experiment itself (its 512-d Proxy-Anchor embedding on the item ids), made tiny for a CPU.
    cfg = compose_config("train", [
        "experiment=inshop_resnet50", f"data.root={inshop_root}", "data.val_items=2", "data.crop=true",
        "backbone=efficientnet_lite0", "backbone.pretrained=false", "data.image_size=32",
        "data.pin_memory=false", "data.batch_size=4", "data.eval_batch_size=8", "data.num_workers=0",
        "logger=none", "trainer=cpu",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "trainer.num_sanity_val_steps=0",
        "training.freeze_epochs=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "callbacks.progress_bar=null", "model.loss.task_weights.item=0.1", f"hydra.run.dir={run}"])
    assert (cfg.embedding.name, cfg.embedding.dim, cfg.embedding.task) == ("proxy_anchor", 512, "item")
    metrics = train(cfg)
    assert {"test/clothes_type/acc", "val/clothes_type/acc"} <= set(metrics)
    out = tmp_path / "eval"
    evaluate(compose_config("evaluate", [
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={out}", "progress=false",
        "retrieval.recall_at=[1,2,6]", "retrieval.ks=[1]", "retrieval.k=5", "retrieval.recall_vs_exact_k=5",
        "examples.k=4"]))
    report = json.loads((out / "report.json").read_text())
    assert (report["query_split"], report["gallery_split"]) == ("test", "gallery")
    assert (report["num_query"], report["num_gallery"]) == (3, 6)
    assert report["retrieval"]["recall_at"] == [1, 2, 6]
    item = report["retrieval"]["metrics"]["item"]
    assert item["num_queries"] == 3 and item["skipped_queries"] == 0
    assert item["recall_at_6"] == 1.0  # all six gallery images: each query's item is among them
    assert 0 <= item["recall_at_1"] <= item["recall_at_2"] <= 1
    assert {"precision_at_1", "map_at_r"} <= set(item)
    assert "R@6" in (out / "report.md").read_text()
    assert report["embedding_dim"] == 512
    assert report["embedding"]["source"] == "projection" and report["embedding"]["loss"] == "proxy_anchor"


def test_item_relevance_without_an_item_head(inshop_root):
    tasks = {"clothes_type": TASKS["clothes_type"], "gender": {"kind": "multiclass", "classes": "auto"}}
    dm = DeepFashionInShopDataModule(root=str(inshop_root), tasks=tasks, transforms=TRANSFORMS, image_size=16,
                                     val_items=2, main_task="clothes_type")
    dm.setup()
    assert [t.name for t in dm.tasks] == ["clothes_type", "gender"]
    assert dm.tasks[1].classes == ("MEN", "WOMEN")
    assert len(set(dm.splits["gallery"].retrieval_targets["item"])) == 3
