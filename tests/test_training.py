"""Training end to end on the tiny IDX fixture: metrics, run folder, freeze schedule, resume,
reproducibility, DDP, loggers and multirun."""

import json
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from wandb_records import history_and_summary

from fashionlab.errors import ConfigError, DataNotFoundError, UnknownBackboneError
from fashionlab.tasks import tasks_from_config
from fashionlab.training.run import (
    build_callbacks,
    build_datamodule,
    build_model,
    prepare_config,
    train,
)

from conftest import SYSTEM_FMNIST, fork_script, run_entry, tiny_overrides

METRIC_NAMES = [f"{stage}/{task}/{metric}" for stage in ("val", "test")
                for task in ("article", "category") for metric in ("acc", "f1_macro", "f1_weighted")]


@pytest.mark.slow
def test_metric_names_and_run_folder(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg(tiny_overrides(fmnist_dir, tmp_path))
    metrics = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(METRIC_NAMES) <= set(saved)
    assert saved == pytest.approx(metrics)
    for key in ("git_commit", "seed", "data_fingerprint", "best_checkpoint", "epochs_completed"):
        assert key in saved
    assert saved["seed"] == 42 and len(saved["data_fingerprint"]) == 64
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    confusion = pd.read_csv(tmp_path / "tables" / "test_article_confusion.csv", index_col=0)
    assert confusion.to_numpy().sum() == 80
    f1 = pd.read_csv(tmp_path / "tables" / "test_category_per_class_f1.csv")
    assert f1["class"].tolist() == ["tops", "bottoms", "dresses", "outerwear", "footwear", "bags"]
    # checkpoints load with weights_only=True and carry the run's config
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["backbone"]["name"] == "test_efficientnet"
    assert tasks_from_config(ckpt["hyper_parameters"]["tasks"]) == tasks_from_config(
        ckpt["hyper_parameters"]["config"]["data"]["tasks"])


@pytest.mark.slow
def test_training_learns_the_fixture(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "trainer.max_epochs=4",
                       "training.freeze_epochs=1", "optimizer.lr=5e-3"])
    metrics = train(cfg)
    # chance is 0.1; the fixture's class is a bright bar at a class-specific row
    assert metrics["test/article/acc"] > 0.5


@pytest.mark.slow
def test_same_seed_same_metrics(compose_cfg, fmnist_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path / name), "trainer.max_epochs=2"])
        runs.append({k: v for k, v in train(cfg).items() if "/" in k})
    assert runs[0] == runs[1]
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path / "c"), "trainer.max_epochs=2",
                       "seed=7"])
    assert {k: v for k, v in train(cfg).items() if "/" in k} != runs[0]


class BackboneSnapshots(Callback):
    """Copies of the backbone and head weights at the end of each training epoch."""

    def __init__(self):
        self.backbone, self.heads, self.bn_means = [], [], []

    def on_train_epoch_end(self, trainer, pl_module):
        net = pl_module.net
        self.backbone.append(net.backbone.conv_stem.weight.detach().clone())
        self.bn_means.append(net.backbone.bn1.running_mean.detach().clone())
        self.heads.append(net.heads["article"][-1].weight.detach().clone())


@pytest.mark.slow
def test_freeze_then_unfreeze(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "trainer.max_epochs=2",
                       "training.freeze_epochs=1"])
    prepare_config(cfg)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    initial = model.net.backbone.conv_stem.weight.detach().clone()
    initial_bn = model.net.backbone.bn1.running_mean.detach().clone()
    initial_head = model.net.heads["article"][-1].weight.detach().clone()
    snapshots = BackboneSnapshots()
    trainer = L.Trainer(**{k: v for k, v in cfg.trainer.items() if k != "_target_"},
                        callbacks=[*build_callbacks(cfg, has_logger=False), snapshots],
                        logger=False)
    trainer.fit(model, datamodule=datamodule)
    assert torch.equal(snapshots.backbone[0], initial), "backbone changed while frozen"
    assert torch.equal(snapshots.bn_means[0], initial_bn), "BN statistics changed while frozen"
    assert not torch.equal(snapshots.heads[0], initial_head), "heads did not train while frozen"
    assert not torch.equal(snapshots.backbone[1], initial), "backbone did not train once unfrozen"
    groups = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert set(groups) == {"heads", "backbone"}
    assert groups["backbone"] == pytest.approx(groups["heads"] * cfg.training.backbone_lr_scale)


def test_unknown_backbone_and_missing_data_errors(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "backbone.name=resnet5O"])
    with pytest.raises(UnknownBackboneError, match="resnet5O"):
        train(cfg)
    cfg = compose_cfg([*tiny_overrides(tmp_path / "nothing-here", tmp_path)])
    with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist"):
        train(cfg)
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "backbone=inception_v3",
                       "data.image_size=32"])
    with pytest.raises(ConfigError, match=r"data\.image_size=32 is below .* 75px"):
        train(cfg)
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "training.monitor=val/colour/acc"])
    with pytest.raises(ConfigError, match="names task 'colour'"):
        train(cfg)


@pytest.mark.slow
def test_cli_run_folder_with_wandb_offline(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    overrides = [o for o in tiny_overrides(fmnist_dir, out) if not o.startswith("logger=")]
    result = fork_script("train.py", *overrides, "logger=wandb")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / ".hydra" / "config.yaml").is_file()
    assert (out / ".hydra" / "overrides.yaml").is_file()
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(METRIC_NAMES) <= set(metrics)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_file = next(runs[0].glob("run-*.wandb"))
    history, summary = history_and_summary(run_file)
    logged = set().union(*history)
    assert {"train/loss_epoch", "val/article/acc", "val/category/f1_macro"} <= logged
    assert summary["test/article/acc"] == pytest.approx(metrics["test/article/acc"])
    assert summary["seed"] == 42 and summary["global_step"] == metrics["global_step"]
    # confusion matrix: one row per (true, predicted) pair; per-class F1: one row per class
    assert summary["test/article/confusion_matrix_table/nrows"] == 100
    assert summary["test/category/per_class_f1/nrows"] == 6
    table = json.loads((runs[0] / "files" / summary["test/article/confusion_matrix_table/path"])
                       .read_text())
    assert table["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert sum(row[2] for row in table["data"]) == 80


@pytest.mark.slow
def test_csv_and_tensorboard_loggers(compose_cfg, fmnist_dir, tmp_path):
    for logger in ("csv", "tensorboard"):
        out = tmp_path / logger
        overrides = [o for o in tiny_overrides(fmnist_dir, out) if not o.startswith("logger=")]
        train(compose_cfg([*overrides, f"logger={logger}"]))
        if logger == "csv":
            frame = pd.read_csv(out / "csv" / "metrics.csv")
            assert "val/article/acc" in frame.columns
        else:
            assert list((out / "tensorboard").glob("events.out.tfevents.*"))
            metrics = json.loads((out / "metrics.json").read_text())
            assert_hparams_dashboard(out / "tensorboard", metrics)


def assert_hparams_dashboard(log_dir: Path, metrics: dict) -> None:
    """TensorBoard's HParams plugin sees the run's hyper-parameters and its final metrics
    (`hparams/<metric>`, scalars equal to metrics.json's), the training curves under their own tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(4e-3)
    assert hparams["backbone.name"].string_value == "test_efficientnet"
    assert not any(k.startswith(("paths.", "data.tasks.", "logger.")) for k in hparams)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"hparams/val/article/acc", "hparams/test/article/acc"} <= tags
    final = events.Scalars("hparams/test/article/acc")
    assert [e.value for e in final] == [pytest.approx(metrics["test/article/acc"])]
    assert "val/article/acc" in events.Tags()["scalars"]


@pytest.mark.slow
def test_multirun(fmnist_dir, tmp_path):
    overrides = [o for o in tiny_overrides(fmnist_dir, tmp_path) if not o.startswith("hydra.")]
    result = run_entry("train.py", "-m", *overrides, "seed=1,2",
                       f"hydra.sweep.dir={tmp_path / 'multi'}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "multi").glob("*/metrics.json"))
    assert len(runs) == 2
    seeds = {json.loads(p.read_text())["seed"] for p in runs}
    assert seeds == {1, 2}


@pytest.mark.slow
def test_config_values_reach_lightning(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "trainer.limit_train_batches=2",
                       "trainer.max_epochs=1"])
    metrics = train(cfg)
    assert metrics["global_step"] == 2
    assert Path(metrics["best_checkpoint"]).name == "best.ckpt"


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="needs apt package dataset-fashion-mnist")
@pytest.mark.slow
def test_real_fashion_mnist_learns(compose_cfg, tmp_path):
    """A few dozen steps on the real data with the bundled pretrained weights beat chance by far."""
    cfg = compose_cfg([
        "logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0", "trainer.max_epochs=1", "training.freeze_epochs=0",
        "trainer.limit_train_batches=30", "trainer.limit_val_batches=4",
        "trainer.limit_test_batches=4", "data.batch_size=64", "data.eval_batch_size=250",
        "data.image_size=32", f"data.root={tmp_path / 'unused'}", "data.download=false",
        f"hydra.run.dir={tmp_path}",
    ])
    metrics = train(cfg)
    assert metrics["test/article/acc"] > 0.6
    assert metrics["test/category/acc"] > 0.7
