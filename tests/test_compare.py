"""`fashionlab compare` and `fashionlab record`: hand-made run folders for the table's logic, and a
real multirun of two tiny runs (W&B group, metrics.json additions, the recorded README)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
from omegaconf import OmegaConf
from wandb_records import read_records

from fashionlab.cli import main
from fashionlab.experiments.compare import load_comparison
from fashionlab.experiments.record import record
from fashionlab.resolvers import multirun_group

from conftest import ROOT, run_entry, tiny_overrides

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_compare")

PNG = bytes.fromhex("89504e470d0a1a0a")  # enough of a PNG for copying


def fake_run(folder: Path, lr: float, acc: float, *, backbone: str = "efficientnet_lite0",
             monitor: str = "val/article/acc", mode: str = "max", params: int | None = 1000,
             extra: dict | None = None) -> Path:
    """A finished run folder as train.py leaves it (metrics.json and .hydra), without training."""
    (folder / ".hydra").mkdir(parents=True)
    config = {"seed": 42, "optimizer": {"lr": lr}, "backbone": {"name": f"tf_{backbone}"},
              "training": {"monitor": monitor, "monitor_mode": mode},
              "paths": {"output_dir": "${hydra:runtime.output_dir}", "run": str(folder)},
              "logger": {"save_dir": "${paths.output_dir}"}}
    OmegaConf.save(config, folder / ".hydra" / "config.yaml")
    choices = {"backbone": backbone, "optimizer": "adamw", "hydra/launcher": "basic"}
    OmegaConf.save({"hydra": {"runtime": {"choices": choices}}}, folder / ".hydra" / "hydra.yaml")
    OmegaConf.save([f"optimizer.lr={lr}", f"backbone={backbone}"], folder / ".hydra" / "overrides.yaml")
    metrics = {"val/article/acc": acc, "val/loss": 1 - acc, "test/article/acc": acc - 0.01,
               "test/article/f1_macro": acc - 0.02, "test/article/f1_weighted": acc, "duration_s": 12.5,
               "train_images_per_s": 100.0, "data_fingerprint": "f" * 64, "data_num_train": 120,
               "git_commit": "abc123", "git_dirty": False, **({"num_parameters": params} if params else {}),
               **(extra or {})}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def fake_eval(run: Path, stamp: str, p_at_1: float, mtime: float) -> Path:
    out = run / "eval" / stamp
    (out / ".hydra").mkdir(parents=True)
    report = {"retrieval": {"metrics": {"article": {"precision_at_1": p_at_1, "map_at_r": p_at_1 / 2}}}}
    (out / "report.json").write_text(json.dumps(report))
    OmegaConf.save([f"ckpt_path={run}/checkpoints/best.ckpt", "index=hnsw"],
                   out / ".hydra" / "overrides.yaml")
    (out / "confusion_article.png").write_bytes(PNG)
    os.utime(out / "report.json", (mtime, mtime))
    return out


@pytest.fixture
def multirun(tmp_path) -> Path:
    """A multirun folder: jobs 0-2 finished (lr 0.1, 0.01, 0.001), job 3 crashed (no metrics.json)."""
    folder = tmp_path / "multiruns" / "2024-05-01_12-00-00"
    for job, (lr, acc) in enumerate([(0.1, 0.5), (0.01, 0.9), (0.001, 0.7)]):
        fake_run(folder / str(job), lr, acc)
    (folder / "3" / ".hydra").mkdir(parents=True)
    OmegaConf.save({"hydra": {"overrides": {"task": ["optimizer.lr=0.1,0.01,0.001,1.0"]}}},
                   folder / "multirun.yaml")
    return folder


def test_multirun_expands_to_its_runs_sorted_by_the_monitored_metric(multirun, tmp_path):
    assert main(["compare", str(multirun), "-o", str(tmp_path / "cmp")]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(table["run"]) == [f"{multirun.name}/{job}" for job in (1, 2, 0)]
    assert list(table.columns[:3]) == ["run", "optimizer.lr", "val/article/acc"]
    assert list(table["optimizer.lr"]) == [0.01, 0.001, 0.1]
    for column in ("test/article/acc", "test/article/macro-F1", "num_parameters", "train_images_per_s",
                   "duration_s"):
        assert column in table.columns
    assert "backbone" not in table.columns and "seed" not in table.columns  # the same in every run
    assert not any(c.startswith("paths.") for c in table.columns)
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "sorted by `val/article/acc` (highest first)" in markdown
    assert "| optimizer.lr" in markdown and "0.9000" in markdown
    assert f"`{multirun / '3'}`" in markdown  # skipped: no metrics.json
    assert (tmp_path / "cmp" / "comparison.png").read_bytes().startswith(PNG)


def test_a_differing_group_choice_comes_with_its_keys_and_min_mode_sorts_ascending(tmp_path):
    a = fake_run(tmp_path / "a", 0.01, 0.6, backbone="resnet50", monitor="val/loss", mode="min")
    b = fake_run(tmp_path / "b", 0.01, 0.8, monitor="val/loss", mode="min")
    comparison = load_comparison([a, b])
    assert comparison.config_columns == ["backbone", "backbone.name"]
    assert list(comparison.table["run"]) == ["b", "a"]  # val/loss 0.2 before 0.4
    assert list(comparison.table.columns[:4]) == ["run", "backbone", "backbone.name", "val/loss"]


def test_retrieval_metrics_come_from_the_newest_evaluation(tmp_path):
    a = fake_run(tmp_path / "a", 0.01, 0.6)
    b = fake_run(tmp_path / "b", 0.02, 0.8)
    fake_eval(a, "old", 0.1, mtime=1_000_000)
    fake_eval(a, "new", 0.3, mtime=2_000_000)
    row = load_comparison([a, b]).table.set_index("run").loc["a"]
    assert row["retrieval/article/P@1"] == pytest.approx(0.3)
    assert row["retrieval/article/mAP@R"] == pytest.approx(0.15)


def test_sort_orders_by_a_chosen_column_and_names_it(tmp_path, capsys):
    a = fake_run(tmp_path / "a", 0.01, 0.8)
    b = fake_run(tmp_path / "b", 0.02, 0.6)
    fake_eval(a, "e", 0.2, mtime=1_000_000)
    fake_eval(b, "e", 0.4, mtime=1_000_000)
    assert list(load_comparison([a, b]).table["run"]) == ["a", "b"]  # by val/article/acc
    comparison = load_comparison([a, b], sort="retrieval/article/mAP@R")
    assert list(comparison.table["run"]) == ["b", "a"]
    assert (comparison.monitor, comparison.mode) == ("retrieval/article/mAP@R", "max")
    assert list(load_comparison([a, b], sort="retrieval/article/P@1:min").table["run"]) == ["a", "b"]
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "-o", str(out), "--sort", "retrieval/article/P@1"]) == 0
    assert "sorted by `retrieval/article/P@1` (highest first)" in (out / "comparison.md").read_text()
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "x"), "--sort", "retrieval/nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'retrieval/nope'" in err[0] and "retrieval/article/mAP@R" in err[0], err


def test_parameters_are_counted_from_the_checkpoint_when_metrics_lack_them(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"net.w": torch.zeros(3, 4), "net.bn.running_mean": torch.zeros(4),
                               "net.bn.num_batches_tracked": torch.tensor(1)}}, ckpt)
    run = fake_run(tmp_path / "a", 0.01, 0.6, params=None, extra={"best_checkpoint": str(ckpt)})
    assert load_comparison([run]).table.loc[0, "num_parameters"] == 12


@pytest.mark.parametrize("make", ["empty", "missing", "bad_json"])
def test_a_folder_without_metrics_is_one_line_naming_it(make, tmp_path, capsys):
    folder = tmp_path / "notarun"
    if make != "missing":
        folder.mkdir()
    if make == "bad_json":
        (folder / "metrics.json").write_text("{")
    assert main(["compare", str(folder), "-o", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fashionlab compare: error: {folder}"), err
    assert not (tmp_path / "cmp").exists()


def test_record_writes_readme_with_commands_commit_and_table(multirun, tmp_path):
    fake_eval(multirun / "1", "2024-05-02", 0.5, mtime=2_000_000)
    (multirun / "1" / "checkpoints").mkdir()
    (multirun / "1" / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    notes = tmp_path / "notes.md"
    notes.write_text("Learning rates for the quickstart.")
    out = record("lr", [multirun], commands=["python train.py -m optimizer.lr=0.1,0.01,0.001"],
                 title="LR sweep", notes_file=notes, root=tmp_path / "experiments")
    text = (out / "README.md").read_text()
    assert text.startswith("# LR sweep\n") and "Learning rates for the quickstart." in text
    assert "python train.py -m optimizer.lr=0.1,0.01,0.001\n" in text  # given
    assert "python train.py -m optimizer.lr=0.1,0.01,0.001,1.0\n" in text  # from multirun.yaml
    assert f"python evaluate.py ckpt_path={multirun}/1/checkpoints/best.ckpt index=hnsw" in text
    assert "trained at commit `abc123`" in text and "- recorded at commit `" in text
    assert f"fingerprint `{'f' * 64}`" in text
    for job in (0, 1, 2):
        assert f"| {multirun.name}/{job} " in text
    assert "![best_confusion_article](figures/best_confusion_article.png)" in text
    assert sorted(p.name for p in out.rglob("*")) == [
        "README.md", "best_confusion_article.png", "comparison.csv", "comparison.md", "comparison.png",
        "figures"]
    with pytest.raises(Exception, match="already exists"):
        record("lr", [multirun], root=tmp_path / "experiments")
    assert record("lr", [multirun], root=tmp_path / "experiments", force=True) == out


def test_multirun_group_is_none_outside_a_multirun(compose_cfg, tmp_path):
    compose_cfg([f"hydra.run.dir={tmp_path}"])
    assert multirun_group() is None


@pytest.fixture(scope="module")
def real_multirun(fmnist_dir, tmp_path_factory) -> Path:
    """`train.py -m` of two tiny runs (W&B offline), as a user runs it."""
    folder = tmp_path_factory.mktemp("real") / "multi-2024"
    overrides = [o for o in tiny_overrides(fmnist_dir, folder) if not o.startswith(("hydra.", "logger="))]
    proc = run_entry("train.py", "-m", *overrides, "logger=wandb", "callbacks.progress_bar=null",
                     "data.image_size=32", "trainer.limit_train_batches=2", "backbone.pretrained=false",
                     "optimizer.lr=0.01,0.002", f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def tiny_model_parameters() -> int:
    """The tiny runs' model: backbone=test_efficientnet (256 features) and two linear heads, article
    (10 classes) and category (6)."""
    backbone = timm.create_model("test_efficientnet", num_classes=0)
    return sum(p.numel() for p in backbone.parameters()) + (backbone.num_features + 1) * (10 + 6)


@pytest.mark.slow
def test_multirun_jobs_share_a_wandb_group_and_record_size_and_speed(real_multirun):
    for job in ("0", "1"):
        (run_file,) = (real_multirun / job / "wandb").glob("offline-run-*/run-*.wandb")
        groups = [r.run.run_group for r in read_records(run_file) if r.WhichOneof("record_type") == "run"]
        assert groups and set(groups) == {real_multirun.name}
        metrics = json.loads((real_multirun / job / "metrics.json").read_text())
        assert metrics["num_parameters"] == tiny_model_parameters() and metrics["train_images_per_s"] > 0
        assert metrics["train_images_seen"] == 2 * 16
        assert metrics["env_torch_version"] == torch.__version__.split("+")[0]


@pytest.mark.slow
def test_record_two_tiny_runs(real_multirun, tmp_path, capsys):
    argv = ["record", "tiny", "--runs", str(real_multirun / "0"), str(real_multirun / "1"),
            "--command", "python train.py -m optimizer.lr=0.01,0.002", "--into", str(tmp_path)]
    assert main(argv) == 0
    text = (tmp_path / "tiny" / "README.md").read_text()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert f"trained at commit `{head}`" in text
    assert "python train.py -m optimizer.lr=0.01,0.002\n" in text
    for job, lr in (("0", "0.01"), ("1", "0.002")):
        assert "python train.py data.root=" in text and f" optimizer.lr={lr}\n" in text
        row = next(line for line in text.splitlines() if line.startswith(f"| {real_multirun.name}/{job} "))
        assert f"| {lr} " in row
    assert "| optimizer.lr " in text and "| val/article/acc " in text and "| test/article/macro-F1 " in text
    assert "## Hardware" in text and "torch " in text
    table = pd.read_csv(tmp_path / "tiny" / "comparison.csv")
    assert len(table) == 2 and table["num_parameters"].eq(tiny_model_parameters()).all()
    assert not list((tmp_path / "tiny").rglob("*.ckpt"))


def test_record_keeps_a_sweeps_best_yaml_and_trials(multirun, tmp_path):
    (multirun / "trials.csv").write_text("number,state,value\n0,COMPLETE,0.5\n1,PRUNED,0.1\n2,COMPLETE,0.7\n")
    (multirun / "best.yaml").write_text("# @package _global_\noptimizer:\n  lr: 0.01\n")
    out = record("sweep", [multirun], root=tmp_path / "experiments")
    text = (out / "README.md").read_text()
    assert (out / f"{multirun.name}_best.yaml").read_text() == (multirun / "best.yaml").read_text()
    assert (out / f"{multirun.name}_trials.csv").is_file()
    assert "## Sweeps" in text and "- 3 trials: 2 complete, 1 pruned" in text
    assert "```yaml\n# @package _global_\noptimizer:\n  lr: 0.01\n```" in text
