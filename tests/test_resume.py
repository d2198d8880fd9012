"""Exact resume: a run killed mid-epoch and resumed with `ckpt_path=<run>/checkpoints/last.ckpt`
continues in its own folder, keeps its best checkpoint and ends with the uninterrupted run's
metrics; RNG, sampler and augmentation state; config checks; atomic checkpoint writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_runs import compose_config
from torch.utils.data import DataLoader, WeightedRandomSampler

from fashionlab.errors import ConfigError
from fashionlab.training.run import train

from conftest import ROOT, SCRIPT_ENV, fork_script, tiny_overrides

TESTS = Path(__file__).resolve().parent
KILL_ENV = "FASHIONLAB_TEST_KILL_AT_STEP"


def script_env(**extra: str) -> dict[str, str]:
    """Environment of a train.py subprocess: tests/ importable (for kill_switch), no kill switch,
    and its own W&B service, as from a shell (a service inherited from this process, where an
    earlier test used W&B, would still hold the killed process's run id)."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, "WANDB_SERVICE")}
    paths = [str(ROOT / "src"), str(TESTS), env.get("PYTHONPATH", "")]
    return {**env, **SCRIPT_ENV, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def train_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    """train.py through tests/kill_switch.py (a KillAtStep callback added, armed by KILL_ENV)."""
    return fork_script(str(TESTS / "kill_switch.py"), "train.py", *args, env=script_env(**env),
                       timeout=900)


def stage_metrics(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}


def only_run_folder(logs: Path) -> Path:
    runs = sorted((logs / "train" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
@pytest.mark.parametrize("freeze_epochs", [0, 2])
def test_kill_mid_epoch_and_resume_matches_uninterrupted_run(fmnist_dir, tmp_path, freeze_epochs):
    """3 epochs of 7 steps with augmentation and dropout, backbone trained throughout (or frozen
    for 2 epochs: the resumed process unfreezes it), default sanity check; SIGKILL at step 10
    (mid epoch 2), resumed from the epoch-1 last.ckpt."""
    common = [o for o in tiny_overrides(fmnist_dir, tmp_path)
              if not o.startswith(("hydra.", "logger=", "trainer.num_sanity_val_steps="))]
    common += ["trainer.max_epochs=3", "trainer.num_sanity_val_steps=2",
               f"training.freeze_epochs={freeze_epochs}",
               "data.image_size=32", "backbone.drop_rate=0.3", "optimizer.lr=5e-3"]
    reference = tmp_path / "reference"
    done = train_script(*common, "logger=none", f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr[-3000:]

    logs = tmp_path / "logs"
    killed = train_script(*common, "logger=wandb", f"paths.log_dir={logs}", **{KILL_ENV: "10"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = only_run_folder(logs)
    last = run / "checkpoints" / "last.ckpt"
    assert not (run / "metrics.json").exists()
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 7

    resumed = train_script(f"ckpt_path={last}", f"data.root={fmnist_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert only_run_folder(logs) == run, "the resumed run continues in the checkpoint's folder"
    assert "dirpath has changed" not in resumed.stdout + resumed.stderr

    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((run / "metrics.json").read_text())
    print("uninterrupted:", stage_metrics(expected))
    print("killed+resumed:", stage_metrics(got))
    assert got["global_step"] == expected["global_step"] == 21
    assert stage_metrics(got) == pytest.approx(stage_metrics(expected), abs=1e-6, rel=0)
    assert got["resumed_from"] == str(last)

    def best_epoch(folder: Path) -> int:
        return torch.load(folder / "checkpoints" / "best.ckpt", map_location="cpu",
                          weights_only=True)["epoch"]

    assert best_epoch(run) == best_epoch(reference)
    # the final weights, not only the best checkpoint's metrics, are those of the uninterrupted run
    final = [torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu",
                        weights_only=True)["state_dict"] for folder in (run, reference)]
    assert final[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    # one W&B run, resumed: both processes logged under the same run id
    ids = {p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2 and len(ids) == 1


def tiny_data(fmnist_dir: Path, *dropped: str) -> list[str]:
    """The tiny fixture's overrides without a run folder (and without the keys `dropped`)."""
    return [o for o in tiny_overrides(fmnist_dir, Path("."))
            if not o.startswith(("hydra.", *(f"{k}=" for k in dropped)))]


@pytest.mark.slow
def test_resume_keeps_folder_and_best_checkpoint(fmnist_dir, tmp_path):
    logs = tmp_path / "logs"
    base = [*tiny_data(fmnist_dir, "logger"), "logger=csv", f"paths.log_dir={logs}"]
    train(compose_config("train", base))
    run = only_run_folder(logs)
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    # pretend epoch 1 scored perfectly: no resumed epoch may replace best.ckpt
    state = torch.load(last, map_location="cpu", weights_only=True)
    key = next(k for k in state["callbacks"] if k.startswith("ModelCheckpoint"))
    state["callbacks"][key]["best_model_score"] = torch.tensor(1.0)
    torch.save(state, last)
    best_bytes = best.read_bytes()

    # the original command line again (same values: allowed), a longer schedule (allowed)
    metrics = train(compose_config("train", [*base, f"ckpt_path={last}", "trainer.max_epochs=2"]))
    assert only_run_folder(logs) == run
    assert best.read_bytes() == best_bytes
    assert metrics["best_checkpoint"] == str(best)
    assert metrics["epochs_completed"] == 2
    assert json.loads((run / "metrics.json").read_text())["resumed_from"] == str(last)
    # the CSV log keeps the first epoch's rows and continues after them (the last row is the
    # final validation of the best checkpoint; the first run's final validation is dropped)
    logged = pd.read_csv(run / "csv" / "metrics.csv")
    assert logged.dropna(subset=["val/article/acc"])["epoch"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("override, key", [
    ("data.batch_size=8", "data.batch_size"),
    ("backbone=resnet50", "backbone.name"),
    ("optimizer.lr=0.5", "optimizer.lr"),
    ("seed=3", "seed"),
    ("experiment=fashion_mnist_lite0", "experiment"),
])
@pytest.mark.slow
def test_resume_refuses_changes_that_alter_results(tiny_run, fmnist_dir, tmp_path, override, key):
    last = tiny_run / "checkpoints" / "last.ckpt"
    def files() -> dict[Path, int]:  # (W&B's service may still append to its own logs; evaluations
        # of the shared run, tiny_eval_dir, may be written meanwhile by another xdist worker)
        return {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*")
                if p.is_file() and not {"wandb", "eval"} & set(p.relative_to(tiny_run).parts)}

    before = files()
    cfg = compose_config("train", [*tiny_data(fmnist_dir, override.split("=")[0]),
                                   f"paths.log_dir={tmp_path}", f"ckpt_path={last}", override])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(cfg)
    assert files() == before


@pytest.mark.slow
def test_resume_config_is_the_checkpoints_plus_overrides(tiny_run):
    from fashionlab.training.resume import resume_config

    last = tiny_run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["config"]
    cfg = resume_config(compose_config("train", [f"ckpt_path={last}", "trainer.max_epochs=5",
                                                 "data.num_workers=0", "logger=csv"]))
    assert cfg.trainer.max_epochs == 5 and cfg.ckpt_path == str(last)
    assert cfg.logger._target_.endswith("CSVLogger")
    # everything else is the trained run's config, not the defaults composed now
    assert cfg.data.image_size == saved["data"]["image_size"] == 32
    assert cfg.optimizer.lr == saved["optimizer"]["lr"]
    assert cfg.paths.output_dir == str(tiny_run)


def test_missing_checkpoint_is_a_project_error(fmnist_dir, tmp_path):
    from fashionlab.errors import CheckpointError

    missing = tmp_path / "runs" / "x" / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        train(compose_config("train", [*tiny_data(fmnist_dir), f"ckpt_path={missing}",
                                       f"paths.log_dir={tmp_path}"]))


def test_rng_state_round_trip_is_weights_only_safe(tmp_path):
    import random

    from fashionlab.training.callbacks import ResumeState

    callback = ResumeState(seed=5)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = callback.state_dict()
    torch.save(state, tmp_path / "state.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_sampler_order_is_a_function_of_seed_and_epoch():
    from fashionlab.training.callbacks import seed_loaders

    weights = torch.tensor([1.0, 2.0, 3.0, 4.0] * 8, dtype=torch.double)
    weighted = DataLoader(list(range(32)), batch_size=4, sampler=WeightedRandomSampler(
        weights, 32, generator=torch.Generator().manual_seed(0)))
    shuffled = DataLoader(list(range(32)), batch_size=4, shuffle=True)

    def order(loader: DataLoader, epoch: int) -> list[int]:
        seed_loaders([loader], seed=7, epoch=epoch)
        return torch.cat(list(loader)).tolist()

    for loader in (weighted, shuffled):
        epoch2 = order(loader, 2)
        order(loader, 3)
        torch.rand(5)  # global RNG draws in between do not matter
        assert order(loader, 2) == epoch2
        assert order(loader, 3) != epoch2


class _Noise:
    """A random 'augmentation' with albumentations' seeding interface."""

    def __init__(self) -> None:
        self.set_random_seed(0)

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray) -> dict:
        return {"image": image + self.rng.random()}


class _Images(torch.utils.data.Dataset):
    def __init__(self, transform) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> float:
        return float(self.transform(image=np.float64(index))["image"])


@pytest.mark.parametrize("workers", [0, 2])
def test_augmentation_is_a_function_of_seed_and_epoch(workers):
    """Loader workers (persistent or fresh) follow the epoch seed set in the main process."""
    from fashionlab.training.callbacks import EpochSeededTransform

    def run(epochs: list[int]) -> list[list[float]]:
        transform = EpochSeededTransform(_Noise())
        loader = DataLoader(_Images(transform), batch_size=4, num_workers=workers,
                            persistent_workers=workers > 0)
        out = []
        for epoch in epochs:
            transform.set_epoch_seed(1000 + epoch)
            out.append(torch.cat(list(loader)).tolist())
        return out

    uninterrupted = run([0, 1, 2])
    assert run([1, 2]) == uninterrupted[1:]
    assert uninterrupted[1] != uninterrupted[2]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from fashionlab.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"weights": torch.ones(3)}, target)
    before = target.read_bytes()

    def interrupted(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"weights": torch.zeros(3)}, target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_trainer_saves_through_the_atomic_checkpoint_io(compose_cfg, fmnist_dir, tmp_path):
    from fashionlab.training.checkpoint_io import AtomicCheckpointIO
    from fashionlab.training.run import build_trainer

    cfg = compose_cfg(tiny_overrides(fmnist_dir, tmp_path))
    trainer = build_trainer(cfg, callbacks=[], logger=False, run_dir=tmp_path)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
