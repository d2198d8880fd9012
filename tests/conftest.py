"""Shared fixtures: tiny Fashion-MNIST IDX files, config composition, run helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from fashionlab.data.readers.fashion_mnist import FILES
from fashionlab.data.readers.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")

# Fixture modules registered as plugins: fixtures_runs holds the session fixtures `tiny_run`
# (a tiny trained run) and `tiny_eval_dir` (its evaluation directory); fixtures_photos holds
# `photo_files` (photo-like full-size JPEGs from benchmarks/photo_data.py); fixtures_s3 holds
# `s3_server` (a throw-away S3-compatible SeaweedFS server on loopback).
pytest_plugins = ["fixtures_runs", "fixtures_browser", "fixtures_photos", "fixtures_s3"]

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_SILENT", "true")
# Nothing in the tests reaches W&B's servers, whatever a config says.
os.environ.setdefault("WANDB_MODE", "offline")
# A loaded 2-core machine can take long to start W&B's service process: wait for it rather than
# fail a test on wandb's default 90 s init timeout.
os.environ.setdefault("WANDB_INIT_TIMEOUT", "600")


def make_fashion_mnist_like(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images whose class is visible plus noise: a horizontal bar at one of five
    rows, solid for classes 0-4 and dashed for classes 5-9."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class)
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 3 + 5 * (label % 5)
        step = 1 if label < 5 else 3
        images[i, row : row + 3, 3:25:step] = 250
    return images, labels.astype(np.uint8)


def write_fashion_mnist(folder: Path, n_train_per_class: int = 16, n_test_per_class: int = 8) -> Path:
    """Write the four Fashion-MNIST files (IDX, gzip) with the official names into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train_per_class, 0), ("test", n_test_per_class, 1)):
        images, labels = make_fashion_mnist_like(n, seed)
        image_name, label_name = FILES[split]
        write_idx(folder / image_name, images)
        write_idx(folder / label_name, labels)
    return folder


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fashion-mnist"))


def tiny_overrides(data_root: Path, out_dir: Path) -> list[str]:
    """Overrides for a seconds-long CPU run on the tiny fixture."""
    return [
        f"data.root={data_root}",
        "data.system_dirs=[]",
        "data.download=false",
        "data.val_size=40",
        "data.batch_size=16",
        "data.eval_batch_size=40",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0",
        "trainer.max_epochs=1",
        f"hydra.run.dir={out_dir}",
    ]


@pytest.fixture
def compose_cfg() -> Iterator:
    """compose_cfg(overrides) -> DictConfig with ${hydra:...} resolvable, as under train.py."""

    def _compose(overrides: list[str], config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = cfg.hydra.run.dir
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


SCRIPT_ENV = {"PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}


def run_script(*args: str, timeout: float = 600, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    """Run a project script (e.g. train.py) in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **SCRIPT_ENV},
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def start_script(*args: str, cwd: Path = ROOT, **kwargs) -> subprocess.Popen:
    """Start a project script in the background (for kill/resume and multi-worker tests)."""
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env={**os.environ, **SCRIPT_ENV},
                            **kwargs)

