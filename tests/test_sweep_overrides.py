"""sweep.py's command line: train overrides for every trial next to the sweep's own settings."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fashionlab.errors import ConfigError
from fashionlab.experiments.compare import load_comparison
from fashionlab.experiments.record import run_commands
from fashionlab.sweep.argv import split_argv
from fashionlab.sweep.run import run_sweep

from conftest import run_entry, tiny_overrides


@pytest.mark.parametrize(("argv", "sweep", "train"), [
    (["search_space=lr", "data=fashion_products", "data.root=/data/fp", "trainer.max_epochs=3",
      "sweep.n_trials=50"],
     ["search_space=lr", "sweep.n_trials=50"], ["data=fashion_products", "data.root=/data/fp",
                                                "trainer.max_epochs=3"]),
    (["--help", "logger=csv"], ["--help"], ["logger=csv"]),
    (["-m", "sweep.seed=1,2", "--cfg", "job", "+model.extra=1", "~callbacks.early_stopping"],
     ["-m", "sweep.seed=1,2", "--cfg", "job"], ["+model.extra=1", "~callbacks.early_stopping"]),
    (["--info", "config", "--config-dir=/x", "-cd", "/y", "hydra.run.dir=/s", "hydra/launcher=basic"],
     ["--info", "config", "--config-dir=/x", "-cd", "/y", "hydra.run.dir=/s", "hydra/launcher=basic"], []),
    (["--info", "trainer.max_epochs=2"], ["--info"], ["trainer.max_epochs=2"]),
    (["seed=7", "paths.data_dir=/d", "paths.output_dir=/o", "++search_space.x={type: int}"],
     ["seed=7", "paths.data_dir=/d", "paths.output_dir=/o", "++search_space.x={type: int}"],
     ["seed=7", "paths.data_dir=/d"]),
])
def test_command_line_splits_into_sweep_and_train_overrides(argv, sweep, train):
    assert split_argv(argv) == (sweep, train)


@pytest.mark.parametrize("arg", ["sweep.base_overrides=[logger=csv]", "+sweep.train_overrides=[a=1]"])
def test_base_overrides_list_is_an_error_pointing_to_the_new_form(arg):
    with pytest.raises(ConfigError, match=r"python sweep\.py search_space=lr .*trainer\.max_epochs=3"):
        split_argv(["search_space=lr", arg])


def test_old_base_overrides_key_in_a_config_is_an_error(compose_cfg, tmp_path):
    cfg = compose_cfg([f"hydra.run.dir={tmp_path}", "search_space=lr",
                       "+sweep.base_overrides=['logger=csv']"], config_name="sweep")
    with pytest.raises(ConfigError, match=r"sweep\.base_overrides is gone"):
        run_sweep(cfg)
    assert not (tmp_path / "trials").exists()


def tiny_train_overrides(data_root: Path) -> list[str]:
    """Train overrides of a seconds-long trial: the tiny fixture at 32 px, 2 steps, no test stage."""
    base = [o for o in tiny_overrides(data_root, Path(".")) if not o.startswith(("hydra.", "logger="))]
    return [*base, "test=false", "data.image_size=32", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "backbone.pretrained=false", "logger=csv"]


@pytest.mark.slow
def test_sweep_applies_command_line_train_overrides_to_every_trial(fmnist_dir, tmp_path):
    sweep_dir = tmp_path / "sweep"
    train = tiny_train_overrides(fmnist_dir)
    proc = run_entry("sweep.py", "search_space=lr", "sweep.n_trials=2", "sweep.pruner=none",
                     "sweep.heartbeat_interval=null", "sweep.study_name=cli", f"hydra.run.dir={sweep_dir}",
                     *train)
    assert proc.returncode == 0, proc.stderr[-3000:]

    for number in (0, 1):
        trial_dir = sweep_dir / "trials" / f"{number:04d}"
        overrides = list(OmegaConf.load(trial_dir / ".hydra" / "overrides.yaml"))
        assert overrides[:len(train)] == train and overrides[-1].startswith("optimizer.lr=")
        config = OmegaConf.load(trial_dir / ".hydra" / "config.yaml")
        assert config.data.root == str(fmnist_dir) and config.trainer.max_epochs == 1
        assert config.backbone.pretrained is False and "CSVLogger" in config.logger._target_
        assert OmegaConf.load(trial_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices.logger == "csv"
        assert (trial_dir / "metrics.json").is_file()

    with open(sweep_dir / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [shlex.split(r["user_attrs_train_overrides"]) for r in rows] == [train, train]
    best = (sweep_dir / "best.yaml").read_text()
    assert f"python train.py experiment=<path of this file> {shlex.join(train)}" in best
    assert list(OmegaConf.load(sweep_dir / "train_overrides.yaml")) == train
    assert "optimizer" in OmegaConf.create(best)

    # the sweep folder is an input of `fashionlab compare` / `record`: its trials, its command
    comparison = load_comparison([sweep_dir])
    assert sorted(comparison.table["run"]) == ["trials/0000", "trials/0001"]
    assert comparison.config_columns == ["optimizer.lr"] and comparison.monitor == "val/article/acc"
    (command,) = run_commands([sweep_dir], comparison.runs)
    assert shlex.split(command)[:3] == ["python", "sweep.py", "search_space=lr"]
    assert shlex.split(command)[-len(train):] == train


@pytest.mark.slow
def test_unknown_train_option_is_one_line_before_any_trial(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_entry("sweep.py", "search_space=lr", "data=fashion_nope", "trainer.max_epochs=1",
                     f"hydra.run.dir={sweep_dir}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: train overrides data=fashion_nope"), lines
    assert "Could not find 'data/fashion_nope'" in lines[0] and "fashion_products" in lines[0]
    assert not (sweep_dir / "trials").exists() and not (sweep_dir / "study.db").exists()
