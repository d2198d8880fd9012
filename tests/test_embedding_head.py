"""The retrieval embedding head (conf/embedding): each metric-learning loss trains, its own
parameters get their learning rate, the projection is what the inference layer and evaluate.py
search, and evaluation folders keep what their figures came from."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_runs import evaluate_run, train_tiny_run

from fashionlab.errors import ConfigError, UnsafeConfigError
from fashionlab.inference.checkpoint import load_checkpoint
from fashionlab.inference.predictor import Predictor
from fashionlab.retrieval.index import build_index, search
from fashionlab.retrieval.metrics import relevant_counts, retrieval_metrics
from fashionlab.training.run import build_datamodule, build_model, prepare_config

from conftest import tiny_overrides

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_embedding_head")

OPTIONS = ["arcface", "subcenter_arcface", "cosface", "proxy_anchor", "supcon", "multi_similarity"]
WITH_PARAMETERS = {"arcface", "subcenter_arcface", "cosface", "proxy_anchor"}


def tiny_module(compose_cfg, fmnist_dir: Path, tmp_path: Path, *extra: str):
    cfg = prepare_config(compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "data.image_size=32",
                                      "training.freeze_epochs=0", *extra]))
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return cfg, datamodule, build_model(cfg, datamodule)


def fit_steps(module, datamodule, steps: int = 2) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS)
def test_each_loss_composes_and_trains(option, compose_cfg, fmnist_dir, tmp_path):
    cfg, datamodule, module = tiny_module(compose_cfg, fmnist_dir, tmp_path, f"embedding={option}",
                                          "embedding.dim=24")
    assert module.metric_loss is not None and module.metric_loss.task == "article"
    own = list(module.metric_loss.parameters())
    assert bool(own) == (option in WITH_PARAMETERS)
    before = [p.detach().clone() for p in [*own, *module.net.embedding.parameters()]]
    trainer = fit_steps(module, datamodule)
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    if own:
        group = groups["metric_loss"]
        assert {id(p) for p in group["params"]} == {id(p) for p in own}
        assert group["initial_lr"] == pytest.approx(cfg.optimizer.lr * cfg.embedding.lr_mult)
        assert cfg.embedding.lr_mult != 1.0
    else:
        assert set(groups) == {"heads", "backbone"}
    heads = {id(p) for p in groups["heads"]["params"]}
    assert all(id(p) in heads for p in module.net.embedding.parameters())
    after = [*own, *module.net.embedding.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), "not trained"
    assert np.isfinite(trainer.callback_metrics["train/loss"].item())


def test_projection_is_normalised_with_the_configured_dim(compose_cfg, fmnist_dir, tmp_path):
    _, datamodule, module = tiny_module(compose_cfg, fmnist_dir, tmp_path, "embedding=arcface",
                                        "embedding.dim=20")
    batch = next(iter(datamodule.val_dataloader()))
    batch["index"] = torch.arange(len(batch["image"]))
    module.eval()
    with torch.inference_mode():
        out = module.predict_step(batch, 0)
    assert out["embeddings"].shape == (len(batch["image"]), 20)
    assert torch.allclose(out["embeddings"].norm(dim=1), torch.ones(len(batch["image"])), atol=1e-5)
    assert module.embedding_info() == {"source": "projection", "loss": "arcface", "task": "article",
                                       "dim": 20}


@pytest.mark.slow
def test_embedding_none_is_unchanged(compose_cfg, fmnist_dir, tmp_path):
    cfg, datamodule, module = tiny_module(compose_cfg, fmnist_dir, tmp_path)
    assert cfg.embedding.name == "none"
    assert module.metric_loss is None and module.net.embedding is None
    assert not any("embedding" in key for key in module.state_dict())
    assert module.embedding_info()["source"] == "pooled"
    trainer = fit_steps(module, datamodule, steps=1)
    assert [g["name"] for g in trainer.optimizers[0].param_groups] == ["heads", "backbone"]


@pytest.mark.slow
def test_bad_embedding_settings_are_config_errors(compose_cfg, fmnist_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"embedding\.task='colour'"):
        tiny_module(compose_cfg, fmnist_dir, tmp_path, "embedding=arcface", "embedding.task=colour")
    with pytest.raises(ConfigError, match=r"embedding\.dim"):
        tiny_module(compose_cfg, fmnist_dir, tmp_path, "embedding=supcon", "embedding.dim=0")
    with pytest.raises(ConfigError, match="mixed images"):
        tiny_module(compose_cfg, fmnist_dir, tmp_path, "embedding=supcon", "model.mixup.mixup_alpha=0.2")


@pytest.fixture(scope="module")
def arcface_run(fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(fmnist_dir, tmp_path_factory.mktemp("arcface-run"),
                          extra=("embedding=arcface", "embedding.dim=16"))


@pytest.fixture(scope="module")
def arcface_eval(arcface_run: Path) -> Path:
    return evaluate_run(arcface_run, arcface_run / "eval" / "tiny")


@pytest.mark.slow
def test_checkpoint_round_trip_and_predictor(arcface_run):
    loaded = load_checkpoint(arcface_run / "checkpoints" / "best.ckpt")
    assert loaded.module.net.embedding is not None
    assert loaded.module.metric_loss is not None and loaded.module.metric_loss.name == "arcface"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(28, 28, 3), dtype=np.uint8) for _ in range(3)]
    predictor = Predictor(loaded)
    preds = predictor.predict(images)
    assert preds.embeddings.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(preds.embeddings, axis=1), 1.0, atol=1e-5)
    x = torch.stack([predictor.transform(image=predictor.model_input(im))["image"] for im in images])
    with torch.inference_mode():
        expected = loaded.module.net.embedding(loaded.module.net.backbone(x))
    np.testing.assert_allclose(preds.embeddings, expected.numpy(), atol=1e-5)


@pytest.mark.slow
def test_checkpoint_without_the_node_loads_as_before(tiny_run, tmp_path):
    """A checkpoint written before conf/embedding existed (no `embedding` in its config)."""
    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["config"].pop("embedding", None)
    torch.save(checkpoint, tmp_path / "old.ckpt")
    loaded = load_checkpoint(tmp_path / "old.ckpt")
    assert loaded.module.net.embedding is None and loaded.module.metric_loss is None


@pytest.mark.slow
def test_checkpoint_naming_another_loss_target_is_refused(arcface_run, tmp_path):
    checkpoint = torch.load(arcface_run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["config"]["embedding"]["loss"]["_target_"] = "torch.nn.Module"
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(UnsafeConfigError, match=r"embedding\.loss\._target_"):
        load_checkpoint(tmp_path / "bad.ckpt")


@pytest.mark.slow
def test_evaluate_indexes_the_projection(arcface_eval):
    manifest = json.loads((arcface_eval / "manifest.json").read_text())
    report = json.loads((arcface_eval / "report.json").read_text())
    expected = {"source": "projection", "loss": "arcface", "task": "article", "dim": 16}
    assert manifest["embedding"] == expected and report["embedding"] == expected
    assert manifest["embedding_dim"] == 16
    assert np.load(arcface_eval / "embeddings.npy").shape[1] == 16
    assert "projection head, arcface loss" in (arcface_eval / "report.md").read_text()


def recomputed(folder: Path, task: str, depth: int) -> dict[str, float]:
    """P@1 and mAP@R of `task` from the folder's own files (exact search to the report's depth)."""
    gallery = pd.read_parquet(folder / "gallery.parquet")
    queries = pd.read_parquet(folder / "queries.parquet")
    g_emb, q_emb = np.load(folder / "embeddings.npy"), np.load(folder / "query_embeddings.npy")
    assert len(gallery) == len(g_emb) and len(queries) == len(q_emb)
    codes, names = pd.factorize(pd.concat([gallery[task], queries[task]]), use_na_sentinel=True)
    g_codes, q_codes = codes[:len(gallery)], codes[len(gallery):]
    assert len(names) > 1
    r = relevant_counts(q_codes, g_codes)
    index, info = build_index(g_emb, {"type": "flat"})
    _, ids = search(index, info, q_emb, depth)
    return retrieval_metrics(q_codes, g_codes, ids, r, ks=(1,))


@pytest.mark.slow
@pytest.mark.parametrize("run", ["tiny_eval_dir", "arcface_eval"])
def test_figures_recompute_from_the_folder(run, request):
    folder = request.getfixturevalue(run)
    report = json.loads((folder / "report.json").read_text())
    assert report["query_split"] != report["gallery_split"]
    assert len(pd.read_parquet(folder / "queries.parquet")) == report["num_query"]
    for task, figures in report["retrieval"]["metrics"].items():
        again = recomputed(folder, task, report["retrieval"]["depth"])
        assert again["precision_at_1"] == pytest.approx(figures["precision_at_1"], abs=1e-9)
        assert again["map_at_r"] == pytest.approx(figures["map_at_r"], abs=1e-9)
        assert again["num_queries"] == figures["num_queries"]
