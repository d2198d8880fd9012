"""Sweeps (sweep.py): Optuna trials of the training run on the tiny fixture — report, best.yaml,
pruning, failed trials, resume, search-space checks, and two workers sharing a PostgreSQL study."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from fashionlab.errors import ConfigError
from fashionlab.sweep.objective import compose_train_config
from fashionlab.sweep.run import run_sweep
from fashionlab.sweep.space import check_space

from conftest import CONF, TINY_BACKBONE, fork_start, run_entry, tiny_overrides

PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.fixture(autouse=True)
def one_thread(monkeypatch) -> Iterator[None]:
    """Trials here are tiny: one thread per process (here and in subprocesses) avoids
    oversubscribing the cores, which slows them down several times (two workers run at once)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trial_overrides(data_root: Path, epochs: int = 1, *extra: str,
                    backbone: str | None = TINY_BACKBONE) -> list[str]:
    """Per-trial train overrides: the tiny fixture at 32px, 4 steps an epoch, no test stage
    (`backbone`: as in tiny_overrides)."""
    base = [o for o in tiny_overrides(data_root, Path("."), backbone) if not o.startswith("hydra.run.dir=")]
    return [*base, "test=false", "data.image_size=32", "trainer.limit_train_batches=4",
            f"trainer.max_epochs={epochs}", *extra]


@pytest.fixture
def sweep_cfg(compose_cfg, fmnist_dir, tmp_path):
    """sweep_cfg(space, *overrides, epochs=1) -> composed `sweep` config, sweep folder in tmp_path."""

    def _make(space: dict | None = None, *overrides: str, epochs: int = 1, extra: tuple = (),
              backbone: str | None = TINY_BACKBONE):
        cfg = compose_cfg([f"hydra.run.dir={tmp_path / 'sweep'}", "search_space=lr",
                           "sweep.heartbeat_interval=null", *overrides], config_name="sweep")
        with open_dict(cfg):
            cfg.sweep.train_overrides = trial_overrides(fmnist_dir, epochs, *extra, backbone=backbone)
            if space is not None:
                cfg.search_space = space
        return cfg

    return _make


def precreate(cfg, *queued: dict) -> None:
    """Create the study with trials queued in a fixed order (run_sweep then resumes it)."""
    sweep_dir = Path(cfg.paths.output_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=str(cfg.sweep.study_name), direction="maximize",
                                storage=f"sqlite:///{sweep_dir / 'study.db'}")
    for params in queued:
        study.enqueue_trial(params)


def load(cfg) -> optuna.Study:
    url = f"sqlite:///{Path(cfg.paths.output_dir) / 'study.db'}"
    return optuna.load_study(study_name=str(cfg.sweep.study_name), storage=url)


@pytest.mark.slow
def test_sweep_writes_report_and_best_yaml_trains(sweep_cfg, fmnist_dir, tmp_path):
    space = {
        "backbone": {"type": "categorical", "choices": ["efficientnet_lite0", "efficientnet_b0"]},
        "optimizer.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "model.head.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "model.loss.task_weights.category": {"type": "float", "low": 0.25, "high": 1.0},
    }
    cfg = sweep_cfg(space, "sweep.n_trials=3", "sweep.study_name=report",
                    extra=("backbone.pretrained=false",), backbone=None)
    result = run_sweep(cfg)
    sweep_dir = tmp_path / "sweep"
    assert result["trials"] == 3 and result["complete"] == 3
    assert (sweep_dir / "study.db").is_file()
    assert len((sweep_dir / "trials.csv").read_text().strip().splitlines()) == 4
    for name in ("history", "parallel_coordinate", "param_importances"):
        assert (sweep_dir / "plots" / f"{name}.html").stat().st_size > 0
        assert (sweep_dir / "plots" / f"{name}.png").stat().st_size > 0
    for number in range(3):
        assert (sweep_dir / "trials" / f"{number:04d}" / "metrics.json").is_file()

    text = (sweep_dir / "best.yaml").read_text()
    assert text.startswith("# @package _global_")
    best = OmegaConf.create(text)
    params = load(cfg).best_params
    assert OmegaConf.to_container(best.defaults) == [{"override /backbone": params["backbone"]}]
    assert best.optimizer.lr == pytest.approx(params["optimizer.lr"])
    assert best.model.loss.task_weights.category == pytest.approx(params["model.loss.task_weights.category"])

    config_dir = tmp_path / "extra_conf"
    (config_dir / "experiment").mkdir(parents=True)
    shutil.copy(sweep_dir / "best.yaml", config_dir / "experiment" / "best.yaml")
    run_dir = tmp_path / "best_run"
    proc = run_entry("train.py", "--config-dir", str(config_dir), "experiment=best",
                     *trial_overrides(fmnist_dir, backbone=None), "backbone.pretrained=false",
                     f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "metrics.json").is_file()
    composed = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert composed.backbone.name == OmegaConf.load(CONF / "backbone" / f"{params['backbone']}.yaml").name
    assert composed.optimizer.lr == pytest.approx(params["optimizer.lr"])


@pytest.mark.slow
def test_hopeless_trials_are_pruned(sweep_cfg):
    # The good trial must clearly learn within its first epochs, or the median pruner sees ties:
    # at 36px and full epochs its val accuracy goes 0.10, 0.28, 0.57 (tiny backbone from scratch),
    # while lr=1e-7 stays at chance (0.10 on 40 items), so a hopeless trial is below the median
    # from epoch 1 on.
    cfg = sweep_cfg(None, "sweep.n_trials=3", "sweep.resume=true", "sweep.pruner=median",
                    "sweep.pruner_args={n_startup_trials: 1, n_warmup_steps: 0}", epochs=3,
                    extra=("training.freeze_epochs=0", "data.image_size=36",
                           "trainer.limit_train_batches=null"))
    # A good learning rate first, then two hopeless ones (queued, so the order is fixed).
    precreate(cfg, *({"optimizer.lr": lr} for lr in (3e-3, 1e-7, 1e-7)))
    result = run_sweep(cfg)
    states = [t.state for t in load(cfg).trials]
    assert states[0] == TrialState.COMPLETE
    assert TrialState.PRUNED in states[1:], states
    assert result["trials"] == 3


@pytest.mark.slow
def test_failing_trial_is_recorded_and_sweep_continues(sweep_cfg):
    space = {"data.image_size": {"type": "categorical", "choices": [8, 32]}}
    cfg = sweep_cfg(space, "sweep.n_trials=2", "sweep.resume=true", "sweep.study_name=fail")
    precreate(cfg, {"data.image_size": 8}, {"data.image_size": 32})
    run_sweep(cfg)
    first, second = load(cfg).trials
    assert first.state == TrialState.FAIL
    assert "ConfigError" in first.user_attrs["error"] and "data.image_size=8" in first.user_attrs["error"]
    assert second.state == TrialState.COMPLETE


@pytest.mark.slow
def test_resume_continues_the_trial_count(sweep_cfg):
    run_sweep(sweep_cfg(None, "sweep.n_trials=1", "sweep.pruner=none"))
    with pytest.raises(ConfigError, match=r"sweep\.resume=true"):
        run_sweep(sweep_cfg(None, "sweep.n_trials=2", "sweep.pruner=none"))
    cfg = sweep_cfg(None, "sweep.n_trials=2", "sweep.pruner=none", "sweep.resume=true")
    result = run_sweep(cfg)
    assert [t.number for t in load(cfg).trials] == [0, 1]
    assert result["complete"] == 2


@pytest.mark.slow
def test_trials_are_wandb_runs_grouped_by_study(sweep_cfg, monkeypatch):
    seen = []

    def fake_train(cfg, extra_callbacks=None, finish_wandb_run=True):
        seen.append((cfg.logger.group, cfg.logger.name, [type(c).__name__ for c in extra_callbacks]))
        return {"val/article/acc": 0.5}

    monkeypatch.setattr("fashionlab.sweep.objective.train", fake_train)
    cfg = sweep_cfg(None, "sweep.n_trials=2", "sweep.study_name=wb")
    with open_dict(cfg):
        cfg.sweep.train_overrides = [o.replace("logger=none", "logger=wandb")
                                     for o in cfg.sweep.train_overrides]
    run_sweep(cfg)
    assert seen == [("wb", f"wb-trial-{n}", ["PyTorchLightningPruningCallback"]) for n in (0, 1)]


@pytest.mark.parametrize("name", ["default", "backbones", "lr"])
def test_shipped_search_spaces_name_train_keys(name):
    space = OmegaConf.to_container(OmegaConf.load(CONF / "search_space" / f"{name}.yaml"))
    check_space(space, compose_train_config(str(CONF), []), str(CONF))


@pytest.mark.parametrize(("space", "message"), [
    ({"optimizer.lr": {"type": "beta", "low": 0, "high": 1}},
     "search_space.optimizer.lr: unknown distribution"),
    ({"optimizer.learning_rate": {"type": "float", "low": 0.1, "high": 1}},
     "'optimizer.learning_rate' is not"),
    ({"backbone": {"type": "categorical", "choices": ["resnet51"]}}, "no conf/backbone/resnet51.yaml"),
    ({"data.batch_size": {"type": "int", "low": 64}}, "search_space.data.batch_size.high"),
    ({"data.transforms.train.transforms.1.p": {"type": "float", "low": 0, "high": 1}},
     "'data.transforms.train.transforms' is a list"),
])
def test_bad_search_space_names_the_key(space, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_space(space, compose_train_config(str(CONF), []), str(CONF))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth) with an empty database."""
    if not PG_BINS:
        pytest.skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    bin_dir = PG_BINS[-1].parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="fashionlab-pg-"))
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()

    def pg(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    pg(str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "-A", "trust", "--no-sync")
    pg(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "server.log"), "-w", "start",
       "-o", f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off")
    try:
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sweeps")
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.postgres
def test_two_workers_share_a_postgresql_study(postgres_url, fmnist_dir, tmp_path):
    args = ["sweep.py", "search_space=lr", f"sweep.storage={postgres_url}", "sweep.study_name=shared",
            "sweep.n_trials=4", "sweep.pruner=none", "sweep.heartbeat_interval=5",
            *trial_overrides(fmnist_dir)]
    workers = [fork_start(*args, f"hydra.run.dir={tmp_path / f'w{i}'}", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
    storage = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for output in outputs:  # each worker ends seeing the whole shared study
        assert "study 'shared': 4 trials (4 complete" in output, output[-3000:]
