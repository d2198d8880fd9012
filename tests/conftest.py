"""Shared fixtures: tiny Fashion-MNIST IDX files, config composition, run helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Under pytest-xdist each worker has a core: one compute thread per worker (and per script it
# starts), so that two workers do not fight over the cores (OpenMP threads that wait for a busy
# core spin and triple a training's CPU time). Set before numpy and torch load their thread pools;
# torch may already be loaded (a plugin), so its pool is also resized below. Results never depend on it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import forkserver
import numpy as np
import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from fashionlab.data.readers.idx import write_idx

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")

# Fixture modules registered as plugins: fixtures_runs holds the session fixtures `tiny_run`
# (a tiny trained run) and `tiny_eval_dir` (its evaluation directory); fixtures_photos holds
# `photo_files` (photo-like full-size JPEGs from benchmarks/photo_data.py); fixtures_s3 holds
# `s3_server` (a throw-away S3-compatible SeaweedFS server on loopback); cpu_times adds
# `--cpu-times=FILE` (docs/contributing.md).
pytest_plugins = ["fixtures_runs", "fixtures_browser", "fixtures_photos", "fixtures_s3", "cpu_times"]

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("WANDB_SILENT", "true")
# Nothing in the tests reaches W&B's servers, whatever a config says.
os.environ.setdefault("WANDB_MODE", "offline")
# A loaded 2-core machine can take long to start W&B's service process: wait for it rather than
# fail a test on wandb's default 90 s init timeout.
os.environ.setdefault("WANDB_INIT_TIMEOUT", "600")
# The stat cache of the data fingerprint's file hashes: one per test process, not the user's.
os.environ.setdefault("FASHIONLAB_HASH_STORE", tempfile.mkdtemp(prefix="fashionlab-hash-store-"))


# pytest-xdist hands out tests in collection order: a 2-minute test started last keeps one worker
# busy while the other idles. These modules hold the longest tests (`--cpu-times`), so they go
# first; each module stays whole, so that its module-scoped fixtures are built once.
LONGEST_FIRST = ("test_gpu_session.py", "test_cache_object_store.py", "test_resume.py",
                 "test_cache_training.py", "test_multinode.py", "test_ddp_and_defects.py",
                 "test_loader_benchmark.py", "test_sweep_faults.py", "test_sweep.py",
                 "test_webapp_safety.py", "test_recommend.py", "test_inference_layer.py",
                 "test_training.py", "test_notebooks.py", "test_compile.py", "test_suite_tools.py",
                 "test_backbones.py", "test_library_parts.py", "test_safe_loading.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def shared_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test session's base folder that every pytest-xdist worker sees (a worker's own base
    temporary folder is one level below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object],
               folder: Path | None = None) -> Path:
    """`build(folder)` once per test session, whichever xdist worker asks first; the others wait
    on a file lock and reuse what it built. `folder` defaults to `<shared base>/<name>`; `build`
    creates it. A build that raised is retried by the next caller."""
    base = shared_base(tmp_path_factory)
    folder = folder or base / name
    with FileLock(base / f"{name}.lock"):
        if not (base / f"{name}.built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.parent.mkdir(parents=True, exist_ok=True)
            build(folder)
            (base / f"{name}.built").touch()
    return folder


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
    # imported here: the reader's module loads torch and Lightning, which pytest's main process
    # (it only hands out tests under pytest-xdist) never needs
    from fashionlab.data.readers.fashion_mnist import FILES

    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train_per_class, 0), ("test", n_test_per_class, 1)):
        images, labels = make_fashion_mnist_like(n, seed)
        image_name, label_name = FILES[split]
        write_idx(folder / image_name, images)
        write_idx(folder / label_name, labels)
    return folder


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(tmp_path_factory, "fashion-mnist", write_fashion_mnist)


# The backbone config option of the tests' tiny training runs: timm's 0.1 M-parameter test model.
TINY_BACKBONE = "test_efficientnet"


def tiny_overrides(data_root: Path, out_dir: Path, backbone: str | None = TINY_BACKBONE) -> list[str]:
    """Overrides for a seconds-long CPU run on the tiny fixture, on the 0.1 M-parameter
    backbone=test_efficientnet (a later `backbone=<option>` replaces it; None keeps the
    config's own, e.g. an experiment's or a sweep trial's)."""
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
        *([f"backbone={backbone}"] if backbone else []),
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


def run_entry(script: str | Path, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a project script's `__main__` in this process, as `run_script` runs it in a new one:
    its exit status, stdout and stderr (an uncaught exception: status 1 and its traceback).

    For tests of what a script reports; torch and the project are already imported, so this
    costs a fraction of a new interpreter. Keep one real `run_script` per script."""
    import contextlib
    import io
    import logging
    import runpy
    import traceback

    script = str(script)
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd = sys.argv[:], os.getcwd()
    root_logger = logging.getLogger()
    saved_logging = root_logger.handlers[:], root_logger.level  # Hydra configures logging per job
    code = 0
    GlobalHydra.instance().clear()
    try:
        sys.argv = [script, *args]
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(script, run_name="__main__")
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except Exception:  # what the interpreter would print for an uncaught exception
                code = 1
                err.write(traceback.format_exc())
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        GlobalHydra.instance().clear()
        root_logger.handlers[:], _ = saved_logging
        root_logger.setLevel(saved_logging[1])
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


def fork_script(*args: str, timeout: float = 600, cwd: Path = ROOT,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`run_script` in a process forked from a server that has already imported torch and
    Lightning (tests/forkserver.py): for a test that needs a process of its own (to kill it, to
    run two at once), not a fresh interpreter. `env` replaces the script environment whole."""
    return forkserver.run(list(args), env if env is not None else {**os.environ, **SCRIPT_ENV}, cwd,
                          timeout)


def fork_start(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
               **kwargs) -> forkserver.ForkedProcess:
    """`start_script` for a forked process (see `fork_script`): a `Popen`-like handle."""
    return forkserver.popen(list(args), env if env is not None else {**os.environ, **SCRIPT_ENV}, cwd,
                            **kwargs)


def start_script(*args: str, cwd: Path = ROOT, **kwargs) -> subprocess.Popen:
    """Start a project script in the background (for kill/resume and multi-worker tests)."""
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env={**os.environ, **SCRIPT_ENV},
                            **kwargs)

