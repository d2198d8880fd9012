"""evaluate.py end to end on a tiny trained checkpoint: outputs, metrics against
pytorch-metric-learning's AccuracyCalculator, catalogue search, manifest and checkpoint errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_runs import evaluate_run
from PIL import Image
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN
from wandb_records import history_and_summary

from fashionlab.errors import CheckpointError, ManifestMismatchError
from fashionlab.evaluation.run import eval_loader
from fashionlab.fileio import file_digest
from fashionlab.inference.checkpoint import load_checkpoint
from fashionlab.inference.embed import extract
from fashionlab.retrieval.catalogue import Catalogue

from conftest import run_entry

# Every test here uses the session's tiny trained run.
pytestmark = pytest.mark.slow

TASKS = ("article", "category")


class ReferenceCalculator(AccuracyCalculator):
    """AccuracyCalculator plus Recall@k (a hit among the first k), on its own k-NN labels."""

    def requires_knn(self):
        return [*super().requires_knn(), "recall_at_5", "recall_at_10"]

    def _recall(self, knn_labels, query_labels, not_lone_query_mask, k):
        hits = (knn_labels[not_lone_query_mask][:, :k] == query_labels[not_lone_query_mask][:, None])
        return hits.any(dim=1).double().mean().item()

    def calculate_recall_at_5(self, knn_labels, query_labels, not_lone_query_mask, **kwargs):
        return self._recall(knn_labels, query_labels, not_lone_query_mask, 5)

    def calculate_recall_at_10(self, knn_labels, query_labels, not_lone_query_mask, **kwargs):
        return self._recall(knn_labels, query_labels, not_lone_query_mask, 10)


def reference_metrics(query, query_labels, reference, reference_labels, k, ref_includes_query):
    calc = ReferenceCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision", "mean_reciprocal_rank",
                 "recall_at_5", "recall_at_10"),
        k=k, device=torch.device("cpu"), knn_func=FaissKNN(index_init_fn=faiss.IndexFlatIP))
    if ref_includes_query:
        out = calc.get_accuracy(query, query_labels, ref_includes_query=True)
    else:
        out = calc.get_accuracy(query, query_labels, reference, reference_labels, ref_includes_query=False)
    return {"precision_at_1": out["precision_at_1"], "recall_at_1": out["precision_at_1"],
            "recall_at_5": out["recall_at_5"], "recall_at_10": out["recall_at_10"],
            "map_at_r": out["mean_average_precision_at_r"], "r_precision": out["r_precision"],
            "mrr": out["mean_reciprocal_rank"]}


def split_embeddings(ckpt: Path, split: str):
    loaded = load_checkpoint(ckpt)
    from hydra.utils import instantiate

    datamodule = instantiate(loaded.cfg.data, _recursive_=False)
    datamodule.setup()
    emb, probs, extra = extract(loaded.module, eval_loader(datamodule, split, None), return_targets=True,
                                progress=False)
    return emb, probs, extra["targets"], datamodule


def test_evaluation_directory_files(tiny_run, tiny_eval_dir):
    out = tiny_eval_dir
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    training = json.loads((tiny_run / "metrics.json").read_text())
    assert report["checkpoint_sha256"] == manifest["checkpoint_sha256"] == file_digest(ckpt)
    assert report["data_fingerprint"] == manifest["data_fingerprint"] == training["data_fingerprint"]
    assert manifest["index"] == report["index"] == {"type": "flat", "factory": "Flat", "params": {}}
    assert manifest["gallery_split"] == "train" and manifest["query_split"] == "test"
    assert set(manifest["tasks"]) == set(TASKS) and manifest["num_items"] == 120
    # the test split's classification metrics equal those training logged for the same checkpoint
    for task in TASKS:
        for metric in ("acc", "f1_macro", "f1_weighted"):
            assert report["classification"][task][metric] == pytest.approx(
                training[f"test/{task}/{metric}"], abs=1e-6)
        per_class = pd.DataFrame(report["classification"][task]["per_class"])
        assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support"]
        assert per_class["support"].sum() == 80
        f1 = pd.read_csv(tiny_run / "tables" / f"test_{task}_per_class_f1.csv")
        np.testing.assert_allclose(per_class["f1"], f1["f1"], atol=1e-6)
        assert np.asarray(report["classification"][task]["confusion"]).sum() == 80
    assert set(report["timings"]) >= {"load_s", "embed_train_s", "embed_test_s", "index_build_s", "total_s"}
    md = (out / "report.md").read_text()
    assert "## Classification (test split)" in md and "\n| article " in md and "mAP@R" in md

    for name in ("confusion_article.png", "confusion_category.png", "retrieval_examples.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    embeddings = np.load(out / "embeddings.npy")
    assert embeddings.dtype == np.float32 and embeddings.shape == (120, manifest["embedding_dim"])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    gallery = pd.read_parquet(out / "gallery.parquet")
    assert list(gallery["id"]) == list(range(120))
    assert set(gallery.columns) == {"id", "split", "index", "path", *TASKS, *(f"pred_{t}" for t in TASKS)}
    assert gallery["path"].isna().all() and (gallery["split"] == "train").all()
    index = faiss.read_index(str(out / "index.faiss"))
    assert index.ntotal == 120 and index.d == embeddings.shape[1]

    # W&B offline run of the evaluation, in the training run's (offline) mode
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history, summary = history_and_summary(next(runs[0].glob("run-*.wandb")))
    assert summary["eval/test/article/acc"] == pytest.approx(report["classification"]["article"]["acc"])
    assert summary["eval/retrieval/category/map_at_r"] == pytest.approx(
        report["retrieval"]["metrics"]["category"]["map_at_r"])
    assert any("eval/retrieval_examples/path" in row for row in history)
    for name in ("retrieval_examples", "confusion_article", "confusion_category"):
        assert summary[f"eval/{name}/_type"] == "image-file"
        assert (runs[0] / "files" / summary[f"eval/{name}/path"]).is_file()
    assert summary["eval/retrieval/metrics/nrows"] == 2
    assert summary["eval/test/article/confusion_matrix_table/nrows"] == 100
    assert summary["eval/test/category/per_class/nrows"] == 6


def test_metrics_equal_reference_implementation(tiny_run, tiny_eval_dir):
    """Same embeddings, AccuracyCalculator's definitions: equal within 1e-6."""
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    report = json.loads((tiny_eval_dir / "report.json").read_text())
    gallery = np.load(tiny_eval_dir / "embeddings.npy")
    query, _, query_targets, datamodule = split_embeddings(ckpt, "test")
    train_targets = datamodule.splits["train"].targets
    # embeddings are reproducible: the gallery extracted again equals embeddings.npy
    again, _, _, _ = split_embeddings(ckpt, "train")
    np.testing.assert_allclose(again, gallery, atol=1e-6)
    depth = report["retrieval"]["depth"]
    for task in TASKS:
        expected = reference_metrics(query, query_targets[task], gallery, train_targets[task], depth, False)
        got = report["retrieval"]["metrics"][task]
        assert got["num_queries"] == 80
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-6), (task, name)


def test_same_split_excludes_self_and_approximate_index(tiny_run, tmp_path):
    out = evaluate_run(tiny_run, tmp_path / "hnsw", ("gallery=test", "query=test", "index=hnsw",
                                                     "retrieval.within_label=category", "wandb.log=false"))
    report = json.loads((out / "report.json").read_text())
    retrieval = report["retrieval"]
    assert retrieval["exclude_self"] is True
    assert report["index"]["type"] == "hnsw" and report["index"]["factory"] == "HNSW32,Flat"
    assert not list(out.glob("wandb"))
    test = np.load(out / "embeddings.npy")
    targets = json.loads((out / "manifest.json").read_text())
    assert targets["gallery_split"] == "test"
    gallery = pd.read_parquet(out / "gallery.parquet")
    for task in TASKS:
        classes = targets["tasks"][task]["classes"]
        labels = np.array([classes.index(c) for c in gallery[task]])
        expected = reference_metrics(test, labels, None, None, retrieval["depth"], True)
        for name, value in expected.items():
            assert retrieval["metrics"][task][name] == pytest.approx(value, abs=1e-6), (task, name)
    # 80 vectors: HNSW explores the whole graph, so it finds the exact neighbours
    assert retrieval["index"]["recall_at_10_vs_exact"] == pytest.approx(1.0)
    within = retrieval["within_label"]
    assert within["task"] == "category" and set(within["metrics"]) == set(TASKS)


def test_flat_index_finds_each_gallery_item_itself(tiny_run, tiny_eval_dir):
    sha = file_digest(tiny_run / "checkpoints" / "best.ckpt")
    catalogue = Catalogue.load(tiny_eval_dir, checkpoint_sha256=sha)
    scores, ids = catalogue.search(catalogue.embeddings, k=3)
    np.testing.assert_array_equal(ids[:, 0], np.arange(len(catalogue)))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (scores[:, 0] >= scores[:, 1]).all()
    # restricted search only returns allowed ids
    allowed = np.flatnonzero(catalogue.gallery["category"] == "footwear")
    _, ids = catalogue.search(catalogue.embeddings[:5], k=4, allowed_ids=allowed)
    assert np.isin(ids, allowed).all()
    with pytest.raises(ValueError, match="holds 120 items"):
        catalogue.search(catalogue.embeddings[:1], k=121)
    # images come back from the training data: gallery row -> train split position
    row = catalogue.gallery.iloc[7]
    image = catalogue.image(7)
    assert image.shape == (28, 28, 3) and image.dtype == np.uint8
    raw = catalogue._datamodule.splits["train"].images[int(row["index"])]
    np.testing.assert_array_equal(image[..., 0], raw)


def test_manifest_mismatch_is_refused(tiny_run, tiny_eval_dir):
    sha = file_digest(tiny_run / "checkpoints" / "best.ckpt")
    other = "0" * 64  # another checkpoint's (last.ckpt may equal best.ckpt when the last epoch is best)
    with pytest.raises(ManifestMismatchError, match=rf"sha256 {sha[:12]}.*sha256 {other[:12]}"):
        Catalogue.load(tiny_eval_dir, checkpoint_sha256=other)
    with pytest.raises(ManifestMismatchError, match="fingerprint"):
        Catalogue.load(tiny_eval_dir, data_fingerprint="0" * 64)


def test_bad_checkpoints_give_clear_errors(tmp_path, tiny_run):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    garbled = tmp_path / "garbled.ckpt"
    garbled.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match=r"garbled\.ckpt: not a readable PyTorch checkpoint"):
        load_checkpoint(garbled)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match=r"hyper_parameters\.config is missing"):
        load_checkpoint(plain)
    loaded = load_checkpoint(tiny_run / "checkpoints" / "best.ckpt")
    assert not loaded.module.training and [t.name for t in loaded.tasks] == list(TASKS)
    assert loaded.run_dir == tiny_run


def test_cli(tiny_run, tmp_path):
    missing = tmp_path / "runs" / "x" / "checkpoints" / "best.ckpt"
    result = run_entry("evaluate.py", f"ckpt_path={missing}", f"paths.log_dir={tmp_path / 'logs'}")
    assert result.returncode != 0
    assert f"checkpoint not found: {missing}" in result.stderr
    # a copy: the shared tiny run is read-only (other xdist workers read it meanwhile)
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("eval", "wandb"))
    ckpt = run / "checkpoints" / "best.ckpt"
    result = run_entry("evaluate.py", f"ckpt_path={ckpt}", "index=ivf_pq", "gallery=train", "query=test",
                       "retrieval.k=20", "wandb.log=false")
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sorted((run / "eval").iterdir())
    assert len(folders) == 1, "evaluate.py writes next to the checkpoint's run, in eval/<date>_<time>"
    report = json.loads((folders[0] / "report.json").read_text())
    assert report["index"]["type"] == "ivf_pq" and report["index"]["factory"].startswith("IVF")
    assert report["retrieval"]["ks"] == [1, 5, 10, 20]
    assert 0 <= report["retrieval"]["index"]["recall_at_10_vs_exact"] <= 1
    assert (folders[0] / ".hydra" / "config.yaml").is_file()
