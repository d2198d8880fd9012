"""A tiny trained run and its evaluation directory, trained once per test session.

Other test modules use the session fixtures `tiny_run` (training run folder with
checkpoints/best.ckpt, trained with W&B offline) and `tiny_eval_dir` (evaluate.py's output for
it with the flat index), or call `train_tiny_run` / `evaluate_run` for their own variants. Both
are built once for the whole session and shared by the pytest-xdist workers (`build_once`):
tests read them and never write into them (copy first: `shutil.copytree`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from wandb_records import flush_wandb

from conftest import CONF, build_once, tiny_overrides


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose a project config as its script would (hydra.run.dir becomes paths.output_dir)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(cfg.hydra.run.dir)
    finally:
        GlobalHydra.instance().clear()
    return cfg


def train_tiny_run(data_root: Path, out_dir: Path, extra: tuple[str, ...] = ()) -> Path:
    """Train EfficientNet-Lite0 at 32 px for two short epochs on the tiny fixture (W&B offline)."""
    from fashionlab.training.run import train

    overrides = [o for o in tiny_overrides(data_root, out_dir) if not o.startswith("logger=")]
    cfg = compose_config("train", [*overrides, "logger=wandb", "data.image_size=32",
                                   "trainer.max_epochs=2", "training.freeze_epochs=1",
                                   "optimizer.lr=5e-3", "callbacks.progress_bar=null", *extra])
    train(cfg)
    return out_dir


def evaluate_run(run_dir: Path, out_dir: Path, extra: tuple[str, ...] = ()) -> Path:
    """evaluate.py on run_dir/checkpoints/best.ckpt, in-process, into out_dir."""
    from fashionlab.evaluation.run import evaluate

    cfg = compose_config("evaluate", [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                                      f"hydra.run.dir={out_dir}", "progress=false", *extra])
    evaluate(cfg)
    return out_dir


@pytest.fixture(scope="session")
def tiny_run(fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build(folder: Path) -> None:
        # 4 rows per task in the misclassified-images table: fewer than the run's mistakes (tests the bound)
        train_tiny_run(fmnist_dir, folder, extra=("logger.log_images=4",))
        flush_wandb()

    return build_once(tmp_path_factory, "tiny-run", build)


@pytest.fixture(scope="session")
def tiny_eval_dir(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build(folder: Path) -> None:
        evaluate_run(tiny_run, folder)
        flush_wandb()

    return build_once(tmp_path_factory, "tiny-eval", build, folder=tiny_run / "eval" / "tiny")
