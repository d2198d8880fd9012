"""Settings of the recommendation commands: conf/recommend/default.yaml plus overrides."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fashionlab.errors import ConfigError, DataNotFoundError
from fashionlab.tasks import TaskSpec, task_by_name

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "conf" / "recommend" / "default.yaml"


def default_config_path() -> Path:
    """conf/recommend/default.yaml of the checkout, or $FASHIONLAB_RECOMMEND_CONFIG."""
    return Path(os.environ.get("FASHIONLAB_RECOMMEND_CONFIG", DEFAULT_CONFIG))


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> DictConfig:
    """The settings file (default: conf/recommend/default.yaml) with `key=value` overrides."""
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        raise DataNotFoundError(f"recommendation config {path} does not exist")
    try:
        cfg = OmegaConf.load(path)
        overrides = list(overrides)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except (OmegaConfBaseException, ValueError) as err:
        raise ConfigError(f"recommendation config {path}: {err}") from None
    return cfg


def category_task(tasks: list[TaskSpec], name: str | None) -> TaskSpec:
    """The task that defines an item's category: `name`, else `category` if present, else the first."""
    task = task_by_name(tasks, name, "category task") if name else next(
        (t for t in tasks if t.name == "category"), tasks[0])
    if task.kind != "multiclass":
        raise ConfigError(f"category task {task.name!r} is {task.kind}; choose a multiclass task")
    return task
