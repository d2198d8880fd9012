"""TensorBoard's HParams dashboard for a training run (`logger=tensorboard`): the run's
hyper-parameters against its final metrics.

Lightning logs the scalars; at fit start it records the config without metrics, which TensorBoard
does not show in HParams (`default_hp_metric: false`). After the best checkpoint is validated and
tested, `log_hparams` writes the HParams summary: the flattened config (minus paths, hydra, logger,
callbacks and the data's location and task declarations) and the final val/test metrics under
`hparams/<metric>`, so that the training curves keep their own tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

#: Top-level config groups that are plumbing, not hyper-parameters.
NOT_HPARAMS = ("paths", "hydra", "logger", "callbacks")
#: Dotted keys (and what is under them) left out too: where the data is and what it declares.
NOT_HPARAM_PREFIXES = ("data.root", "data.system_dirs", "data.download", "data.md5", "data.mirrors",
                       "data.tasks", "data.cache.storage_options")
#: The tag prefix of the final metrics in the HParams dashboard.
METRIC_PREFIX = "hparams/"


def flat_hparams(cfg: DictConfig) -> dict[str, bool | int | float | str]:
    """The config flattened to dotted keys with scalar values (lists and None as text)."""
    container = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k not in NOT_HPARAMS]), resolve=True)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        key = prefix[:-1]
        flat[key] = node if isinstance(node, bool | int | float | str) else str(node)

    walk(container, "")
    return {k: v for k, v in flat.items()
            if not any(k == p or k.startswith(f"{p}.") for p in NOT_HPARAM_PREFIXES)}


def final_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The val/ and test/ numbers of metrics.json under `hparams/<name>`."""
    return {f"{METRIC_PREFIX}{k}": float(v) for k, v in metrics.items()
            if k.startswith(("val/", "test/")) and isinstance(v, int | float)}


def log_hparams(logger: Any, cfg: DictConfig, metrics: Mapping[str, Any], step: int) -> None:
    """Write the HParams summary and the final metrics into a TensorBoardLogger's run (no-op for
    other loggers)."""
    if not isinstance(logger, TensorBoardLogger):
        return
    from torch.utils.tensorboard.summary import hparams

    values = final_metrics(metrics)
    writer = logger.experiment
    for summary in hparams(flat_hparams(cfg), values):
        writer._get_file_writer().add_summary(summary)  # (re)opened: Lightning closes it after fit
    for key, value in values.items():
        writer.add_scalar(key, value, step)
    writer.flush()
