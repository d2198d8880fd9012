"""The inference layer: one construction path for training and loading, predictions and embeddings
through Lightning's predict loop (sharded over processes alike), the predictor on ArrayImageDataset,
and one model run per upload in the demo."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fashionlab.data.array_dataset import ArrayImageDataset
from fashionlab.evaluation.run import eval_loader
from fashionlab.inference.checkpoint import load_checkpoint
from fashionlab.inference.embed import extract, merge_shards, predict_arrays
from fashionlab.inference.labels import predicted_indices
from fashionlab.inference.predictor import Predictor
from fashionlab.models.build import Deferred

from conftest import tiny_overrides

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_inference_layer")

APP = Path(__file__).resolve().parents[1] / "src" / "fashionlab" / "recommend" / "webui" / "streamlit_app.py"


@pytest.fixture(scope="module")
def built(fmnist_dir, tmp_path_factory):
    """A training config's module and data (no fit), and its weights saved as a checkpoint."""
    from fixtures_runs import compose_config

    from fashionlab.training.run import build_datamodule, build_model, prepare_config

    out = tmp_path_factory.mktemp("built")
    cfg = compose_config("train", [*tiny_overrides(fmnist_dir, out / "run"), "backbone.pretrained=false",
                                   "data.image_size=32", "training.freeze_epochs=2",
                                   "training.backbone_lr_scale=0.25"])
    prepare_config(cfg)
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    model = build_model(cfg, datamodule).eval()
    path = out / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return cfg, datamodule, model, path


def test_loading_builds_the_module_the_training_run_built(built):
    """Was: models/checkpoint.py's own factory dropped the scheduler, freeze_epochs and
    backbone_lr_scale (loaded: scheduler None, freeze_epochs 0, backbone_lr_scale 1.0)."""
    _, _, model, path = built
    loaded = load_checkpoint(path).module
    for module in (model, loaded):
        assert module.scheduler_factory is not None
        assert (module.freeze_epochs, module.backbone_lr_scale) == (2, 0.25)
        assert isinstance(module.optimizer_factory, Deferred)
    assert type(loaded.net.backbone) is type(model.net.backbone)
    assert loaded.hparams["config"] == model.hparams["config"]
    assert not loaded.training
    # loading builds no optimizer or schedule: they are built only if the module is ever fitted
    assert loaded.optimizer_factory._factory is None and loaded.scheduler_factory._factory is None


def test_configure_optimizers_scales_the_backbone_lr(built, monkeypatch):
    cfg, _, model, _ = built
    monkeypatch.setattr(model, "scheduler_factory", None)  # the schedule needs a fitting trainer
    optimizer = model.configure_optimizers()
    lr = float(cfg.optimizer.lr)
    assert [g["name"] for g in optimizer.param_groups] == ["heads", "backbone"]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([lr, lr * 0.25])


def test_predict_step_gives_embeddings_probs_and_labels_in_one_pass(built):
    _, datamodule, model, _ = built
    batch = next(iter(eval_loader(datamodule, "test", 8)))
    with torch.inference_mode():
        out = model.predict_step(batch, 0)
    assert torch.allclose(out["embeddings"].norm(dim=1), torch.ones(8), atol=1e-5)
    probs = {k: v.numpy() for k, v in out["probs"].items()}
    expected = predicted_indices(model.tasks, probs)
    for task in model.tasks:
        np.testing.assert_array_equal(out["preds"][task.name].numpy(), expected[task.name])
        np.testing.assert_allclose(probs[task.name].sum(1), 1.0, atol=1e-5)
    assert torch.equal(out["index"], batch["index"]) and set(out["targets"]) == set(batch["targets"])


def test_extract_runs_the_predict_loop_in_dataset_order(built):
    _, datamodule, model, _ = built
    emb, _, extra = extract(model, eval_loader(datamodule, "test", 16), return_targets=True,
                                progress=False)
    n = len(datamodule.splits["test"])
    assert emb.shape[0] == n and emb.dtype == np.float32
    np.testing.assert_array_equal(extra["index"], np.arange(n))
    np.testing.assert_array_equal(extra["targets"]["article"],
                                  datamodule.splits["test"].targets["article"])
    images = torch.stack([datamodule.splits["test"][i]["image"] for i in range(4)])
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(model.net.embed(images), dim=-1)
    np.testing.assert_allclose(emb[:4], direct.numpy(), atol=1e-5)
    assert not model.training and model.device.type == "cpu"


def test_merge_shards_restores_dataset_order_once_per_item():
    shards = [{"index": np.array([1, 3, 0]), "embeddings": np.array([[1.0], [3.0], [0.0]])},
              {"index": np.array([2, 0]), "embeddings": np.array([[2.0], [0.0]])}, {}]
    merged = merge_shards(shards)
    np.testing.assert_array_equal(merged["index"], [0, 1, 2, 3])
    np.testing.assert_array_equal(merged["embeddings"][:, 0], [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no batches"):
        merge_shards([{}])


@pytest.mark.slow
def test_two_cpu_processes_give_the_embeddings_of_one(built):
    """ddp_spawn over 2 CPU processes (gloo): each embeds its shard, the merge is item for item
    what one process computes (an odd number of items: no padding duplicates)."""
    _, datamodule, model, _ = built
    dataset = torch.utils.data.Subset(datamodule.splits["test"], range(23))
    loader = DataLoader(dataset, batch_size=5, shuffle=False)
    one = predict_arrays(model, loader, progress=False)
    started = time.perf_counter()
    two = predict_arrays(model, loader, progress=False, devices=2, strategy="ddp_spawn")
    print(f"2 processes: {time.perf_counter() - started:.1f} s")
    assert set(one) == set(two)
    np.testing.assert_array_equal(two["index"], np.arange(23))
    for key in one:
        np.testing.assert_allclose(two[key], one[key], atol=1e-5, err_msg=key)


def test_predictor_uses_array_dataset_and_matches_extract(built):
    _, datamodule, _, path = built
    from fashionlab.recommend import predict

    assert not hasattr(predict, "_Images")
    predictor = Predictor.from_checkpoint(path, batch_size=3)
    test = datamodule.splits["test"]
    rgb = [test.raw_image(i) for i in range(5)]
    preds = predictor.predict(rgb)
    emb, probs = extract(predictor.checkpoint.module,
                         DataLoader(ArrayImageDataset([predictor.model_input(im) for im in rgb], {},
                                                      predictor.transform), batch_size=5), progress=False)
    np.testing.assert_allclose(preds.embeddings, emb, atol=1e-6)
    for task in predictor.tasks:
        np.testing.assert_allclose(preds.probs[task.name], probs[task.name], atol=1e-6)
        assert len(preds.labels[task.name]) == 5


def test_similar_to_image_reuses_the_callers_predictions(built):
    from fashionlab.recommend.similar import similar_to_image

    _, datamodule, _, path = built
    predictor = Predictor.from_checkpoint(path)
    image = datamodule.splits["test"].raw_image(0)
    preds = predictor.predict([image])

    class Catalogue:
        tasks = predictor.tasks

    calls = []
    predictor.predict = lambda images: calls.append(images)
    import fashionlab.recommend.similar as similar

    seen = {}

    def fake_search(catalogue, embedding, k, *args, **kwargs):
        seen["embedding"] = embedding
        return np.zeros(0, np.float32), np.zeros(0, np.int64)

    original = similar._search, similar.results_table
    similar._search, similar.results_table = fake_search, lambda *a: None
    try:
        result = similar_to_image(predictor, Catalogue(), image, 1, predictions=preds)
    finally:
        similar._search, similar.results_table = original
    assert calls == [] and np.array_equal(seen["embedding"], preds.embeddings[0])
    assert result.query_labels == {t.name: preds.labels[t.name][0] for t in predictor.tasks}


def test_streamlit_app_runs_the_model_once_per_upload():
    """Was: similar_to_image predicted the upload, then the app predicted it again for its labels."""
    tree = ast.parse(APP.read_text())
    predicts = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                and n.func.attr == "predict"]
    similar = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
               and n.func.id == "similar_to_image"]
    assert len(predicts) == 1 and len(similar) == 1
    assert "predictions" in {k.arg for k in similar[0].keywords}
