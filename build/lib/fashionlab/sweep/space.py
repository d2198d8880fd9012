"""Search spaces: Optuna distributions over train-config keys, sampled into Hydra overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

from fashionlab.errors import ConfigError

KINDS = ("float", "int", "categorical")
_MISSING = object()


def is_group(key: str, train_cfg: DictConfig) -> bool:
    """Whether `key` names a config group (e.g. `backbone`) rather than a value."""
    return key in train_cfg.hydra.runtime.choices


def check_space(space: Mapping[str, Any], train_cfg: DictConfig, conf_dir: str) -> None:
    """Raise ConfigError naming the first key whose distribution or target is invalid.

    `train_cfg` must be composed with `return_hydra_config=True` (to know the config groups).
    A key must exist in the train config, be a config group, or be new under a mapping that is
    empty in the train config (e.g. `model.loss.task_weights.category`).
    """
    if not space:
        raise ConfigError("search_space is empty: give at least one key with a distribution")
    for key, spec in space.items():
        where = f"search_space.{key}"
        if not isinstance(spec, Mapping) or spec.get("type") not in KINDS:
            kind = spec.get("type") if isinstance(spec, Mapping) else spec
            raise ConfigError(f"{where}: unknown distribution type {kind!r} (use one of {', '.join(KINDS)})")
        if spec["type"] == "categorical":
            choices = spec.get("choices")
            if not choices or not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
                raise ConfigError(f"{where}.choices must be a non-empty list of scalars, got {choices!r}")
        else:
            for bound in ("low", "high"):
                if not isinstance(spec.get(bound), int | float):
                    raise ConfigError(f"{where}.{bound} must be a number for type {spec['type']}")
            if spec["low"] > spec["high"]:
                raise ConfigError(f"{where}: low={spec['low']} is above high={spec['high']}")
        if is_group(key, train_cfg):
            for choice in spec.get("choices") or []:
                if not (Path(conf_dir) / key / f"{choice}.yaml").is_file():
                    raise ConfigError(
                        f"{where}: {choice!r} is not a {key} option (no conf/{key}/{choice}.yaml)")
            if spec["type"] != "categorical":
                raise ConfigError(f"{where}: config group {key!r} needs type categorical")
        elif (through := list_in_path(key, train_cfg)) is not None:
            raise ConfigError(
                f"{where}: {through!r} is a list, and a list item cannot be written into best.yaml; "
                f"give the value a named key in the config and refer to it (e.g. data.transforms.hflip_p)")
        elif override_key(key, train_cfg) is None:
            raise ConfigError(
                f"{where}: key {key!r} is not in the train config (see `python train.py --cfg job`)")


def list_in_path(key: str, train_cfg: DictConfig) -> str | None:
    """The first prefix of `key` that is a list in the train config, if any."""
    parts = key.split(".")
    for end in range(1, len(parts)):
        prefix = ".".join(parts[:end])
        node = OmegaConf.select(train_cfg, prefix, default=None, throw_on_resolution_failure=False)
        if isinstance(node, ListConfig):
            return prefix
    return None


def override_key(key: str, train_cfg: DictConfig) -> str | None:
    """`key`, `++key` for a new key under an empty mapping, or None if the key cannot be set."""
    if OmegaConf.select(train_cfg, key, default=_MISSING, throw_on_resolution_failure=False) is not _MISSING:
        return key
    parent, _, _ = key.rpartition(".")
    node = OmegaConf.select(train_cfg, parent, default=None) if parent else None
    if isinstance(node, DictConfig) and len(node) == 0:
        return f"++{key}"
    return None


def sample(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """Suggest one value per key of the search space."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            params[key] = trial.suggest_categorical(key, list(spec["choices"]))
        elif spec["type"] == "float":
            params[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                              log=bool(spec.get("log", False)), step=spec.get("step"))
        else:
            params[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]),
                                            log=bool(spec.get("log", False)), step=int(spec.get("step", 1)))
    return params


def format_value(value: Any) -> str:
    """A value in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[\w./-]+", text) else "'" + text.replace("'", "\\'") + "'"


def to_overrides(params: Mapping[str, Any], train_cfg: DictConfig) -> list[str]:
    """Hydra overrides (`key=value`) setting each sampled parameter."""
    overrides = []
    for key, value in params.items():
        target = key if is_group(key, train_cfg) else override_key(key, train_cfg) or key
        overrides.append(f"{target}={format_value(value)}")
    return overrides
