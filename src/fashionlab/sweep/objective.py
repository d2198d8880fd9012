"""One trial: compose the training config with the sampled overrides and run `train(cfg)`."""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna_integration import PyTorchLightningPruningCallback

from fashionlab.errors import ConfigError
from fashionlab.redaction import masked_config
from fashionlab.sweep.space import sample, to_overrides
from fashionlab.sweep.wandb_logging import configure_trial_run
from fashionlab.training.run import train

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _own_hydra() -> Iterator[None]:
    """Let the compose API run inside `@hydra.main`, then give the sweep its Hydra state back."""
    global_hydra = GlobalHydra.instance()
    saved_hydra = global_hydra.hydra if global_hydra.is_initialized() else None
    saved_config = HydraConfig.instance().cfg
    global_hydra.clear()
    try:
        yield
    finally:
        global_hydra.clear()
        if saved_hydra is not None:
            global_hydra.initialize(saved_hydra)
        HydraConfig.instance().cfg = saved_config


def compose_train_config(conf_dir: str, overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """The `train` config with overrides, as train.py would see it, writing into `run_dir`."""
    if run_dir is not None:
        overrides = [*overrides, f"hydra.run.dir={run_dir}"]
    with _own_hydra(), initialize_config_dir(conf_dir, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if run_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
            cfg.paths.output_dir = str(run_dir)
    return cfg


def train_overrides(sweep: DictConfig) -> list[str]:
    """The train overrides of every trial (sweep.py's command line, set into `sweep.train_overrides`)."""
    if sweep.get("base_overrides"):
        raise ConfigError("sweep.base_overrides is gone: give train overrides directly on sweep.py's "
                          "command line, e.g. `python sweep.py search_space=lr trainer.max_epochs=3`")
    return [str(o) for o in sweep.get("train_overrides") or []]


def composition_error(error: HydraException, overrides: list[str]) -> ConfigError:
    """Hydra's (multi-line) composition error as one line naming the train overrides."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    if "Available options" in str(error):
        options = str(error).split("Available options", 1)[1].split("Config search path", 1)[0]
        message += " (available:" + ",".join(f" {o.strip()}" for o in options.splitlines()[1:]
                                             if o.strip()) + ")"
    elif len(lines) > 1 and not lines[1].startswith("See "):
        message += " " + lines[1]
    return ConfigError(f"train overrides {' '.join(overrides) or '(none)'}: {message}")


def check_train_overrides(conf_dir: str, overrides: list[str]) -> DictConfig:
    """The train config composed with `overrides` once, before any trial; ConfigError if it fails."""
    try:
        return compose_train_config(conf_dir, overrides)
    except HydraException as error:
        raise composition_error(error, overrides) from error


class Objective:
    """Callable for `study.optimize`: returns the trial's `sweep.metric`, reports it per epoch."""

    def __init__(self, sweep: DictConfig, space: Mapping[str, Any], base_cfg: DictConfig,
                 conf_dir: str, sweep_dir: Path) -> None:
        self.sweep = sweep
        self.train_overrides = train_overrides(sweep)
        self.space = space
        self.base_cfg = base_cfg
        self.conf_dir = conf_dir
        self.sweep_dir = sweep_dir

    def __call__(self, trial: optuna.Trial) -> float:
        params = sample(trial, self.space)
        sampled = to_overrides(params, self.base_cfg)
        overrides = [*self.train_overrides, *sampled]
        run_dir = self.sweep_dir / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("overrides", sampled)
        trial.set_user_attr("train_overrides", shlex.join(self.train_overrides))
        log.info("trial %d: %s", trial.number, " ".join(sampled))
        try:
            return self._run(trial, overrides, run_dir, params)
        except optuna.TrialPruned:
            log.info("trial %d pruned", trial.number)
            raise
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:4000])
            raise

    def _run(self, trial: optuna.Trial, overrides: list[str], run_dir: Path, params: dict[str, Any]) -> float:
        cfg = compose_train_config(self.conf_dir, overrides, run_dir)
        configure_trial_run(cfg, str(self.sweep.study_name), trial, params)
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        plain = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
        OmegaConf.save(OmegaConf.create(masked_config(plain)), run_dir / ".hydra" / "config.yaml")
        OmegaConf.save(OmegaConf.create({"hydra": cfg.hydra}), run_dir / ".hydra" / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(overrides), run_dir / ".hydra" / "overrides.yaml")

        metric = str(self.sweep.metric)
        callbacks = []
        if str(self.sweep.pruner).lower() != "none":
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=metric))
        with _trial_hydra_config(cfg):
            # The W&B run stays open: run_trial tags it with the trial's final state, then finishes it.
            metrics = train(cfg, extra_callbacks=callbacks, finish_wandb_run=False)
        if metric not in metrics:
            raise ConfigError(f"sweep.metric={metric!r} is not a metric of the run "
                              f"(e.g. {', '.join(k for k in metrics if k.startswith('val/'))})")
        return float(metrics[metric])


@contextlib.contextmanager
def _trial_hydra_config(cfg: DictConfig) -> Iterator[None]:
    """Make `${hydra:...}` resolve to the trial's Hydra config while it trains."""
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = saved
