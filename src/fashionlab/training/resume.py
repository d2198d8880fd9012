"""The config of a resumed run: the checkpoint's own config plus this command line's overrides.

`python train.py ckpt_path=<run>/checkpoints/last.ckpt [overrides]` resumes `<run>` in its folder.
The composed defaults do not matter (the run may have used other groups or an experiment); only
the keys named on the command line change, and only keys that leave the epochs already trained
valid may change: stopping criteria, logging, locations. Changing data, model, optimizer,
schedule, seed or precision would make the run something no single config describes: refused.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from fashionlab.config_safety import check_targets
from fashionlab.errors import ConfigError
from fashionlab.inference.checkpoint import read_checkpoint
from fashionlab.redaction import masked_config
from fashionlab.rundir import checkpoint_run_dir

log = logging.getLogger(__name__)

#: Keys (and key prefixes) a resumed run may change.
RESUME_SAFE = (
    "ckpt_path", "test", "task_name", "paths", "logger",
    "trainer.max_epochs", "trainer.max_steps", "trainer.max_time", "trainer.min_epochs",
    "trainer.min_steps", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.num_sanity_val_steps", "trainer.limit_test_batches",
    "trainer.profiler", "callbacks.progress_bar", "callbacks.lr_monitor",
    "callbacks.early_stopping", "data.root", "data.system_dirs", "data.download", "data.mirrors",
    "data.pin_memory", "data.eval_batch_size", "data.prefetch_factor", "data.cache.workers",
    "data.cache.storage_options", "training.join_timeout_s",
)
#: Keys a resumed run may change, with a warning: the run continues, but no longer retraces the
#: uninterrupted run exactly (other hardware, or augmentation spread over other workers).
RESUME_WARN = ("trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
               "data.num_workers", "data.cache.dir", "training.compile", "training.compile_backend",
               "training.matmul_precision")


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_diff(old: Any, new: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old, new)} for every leaf that differs (lists compare whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for key in sorted(set(old) | set(new), key=str):
            out.update(config_diff(old.get(key), new.get(key), f"{prefix}{key}."))
        return out
    return {} if old == new else {prefix.rstrip("."): (old, new)}


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                                  resolve=True)


def _command_line(cfg: DictConfig) -> tuple[list[str], set[str]]:
    """This launch's overrides and the names of the config groups (from Hydra's own record)."""
    hydra = cfg.get("hydra") or (HydraConfig.get() if HydraConfig.initialized() else None)
    if hydra is None:
        return [], set()
    return list(hydra.overrides.task), set(hydra.runtime.choices)


@dataclass
class Resume:
    """What a resumed run needs to know about its checkpoint beyond the config."""

    ckpt_path: str
    global_step: int
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def begin_resume(cfg: DictConfig) -> tuple[DictConfig, Resume]:
    """Read the checkpoint once: the resumed run's config and its Resume record."""
    checkpoint = read_checkpoint(str(cfg.ckpt_path))
    # The resumed run builds from the checkpoint's config: the same allow-list as loading.
    check_targets(checkpoint["hyper_parameters"]["config"], str(cfg.ckpt_path),
                  key="hyper_parameters.config")
    merged = resume_config(cfg, checkpoint)
    changed = resume_changes(checkpoint["hyper_parameters"]["config"], merged)
    return merged, Resume(str(cfg.ckpt_path), int(checkpoint.get("global_step", 0)), changed)


def resume_changes(saved: dict[str, Any], cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """Keys of the resumed config that differ from the checkpoint's (locations left out)."""
    return {k: v for k, v in config_diff(saved, OmegaConf.to_container(cfg)).items()
            if not _matches(k, ("paths", "ckpt_path"))}


def record_resume(run_dir: Path, cfg: DictConfig, resume: Resume) -> None:
    """Keep `.hydra/config.yaml` the run's config: rewrite it (resolved) when the resume changed
    keys (e.g. trainer.max_epochs); Hydra itself leaves an existing record untouched."""
    record = run_dir / ".hydra" / "config.yaml"
    if resume.changed and record.parent.is_dir():
        OmegaConf.save(OmegaConf.create(masked_config(OmegaConf.to_container(cfg, resolve=True))), record)
        log.info("%s: updated for the resume (%s)", record, ", ".join(resume.changed))


def keep_csv_history(logger: Any, resume: Resume) -> None:
    """CSVLogger deletes an existing metrics.csv when it starts; keep the rows the checkpoint
    covers (steps before its global step; later ones are replayed) and append after them."""
    if not isinstance(logger, CSVLogger):
        return
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if int(float(r.get("step") or 0)) < resume.global_step]
    writer = logger.experiment  # (removes the old file)
    with path.open("w", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=header)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = header


def resume_config(cfg: DictConfig, checkpoint: dict[str, Any] | None = None) -> DictConfig:
    """The resumed run's config (see module docstring); raises ConfigError for refused changes."""
    ckpt_path = str(cfg.ckpt_path)
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(ckpt_path)
    saved: dict[str, Any] = checkpoint["hyper_parameters"]["config"]
    composed = _plain(cfg)
    composed_cfg = OmegaConf.create(composed)
    merged = OmegaConf.create(saved)
    overrides, groups = _command_line(cfg)
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key.startswith("hydra"):
            continue
        path = key.replace("/", ".")
        if key in groups and OmegaConf.select(merged, path) is None:
            # a group in the global package (experiment=...): it may touch any key
            found = {k: v for k, v in config_diff(saved, composed).items()
                     if not _matches(k, ("paths", "ckpt_path", "logger"))}
            if found:
                raise ConfigError(
                    f"{override.input_line} changes {_describe(found)} of the run resumed from "
                    f"{ckpt_path}; leave it out: a resumed run keeps its checkpoint's config")
            continue
        if override.type == OverrideType.DEL:
            parent, _, leaf = path.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
        else:
            OmegaConf.update(merged, path, OmegaConf.select(composed_cfg, path), merge=False,
                             force_add=True)
    merged.paths = composed["paths"]
    merged.ckpt_path = ckpt_path
    changed = resume_changes(saved, merged)
    refused = {k: v for k, v in changed.items() if not _matches(k, RESUME_SAFE + RESUME_WARN)}
    if refused:
        raise ConfigError(
            f"resuming from {ckpt_path} cannot change {_describe(refused)} (that would change "
            f"what the trained epochs mean); start a new run instead, or change only "
            f"trainer.max_epochs, logging or data locations")
    for key, (old, new) in changed.items():
        if _matches(key, RESUME_WARN):
            log.warning("resuming with %s=%s (was %s): the run will not retrace an "
                        "uninterrupted run exactly", key, new, old)
    _check_folder(ckpt_path, Path(str(merged.paths.output_dir)))
    _resume_wandb(merged, checkpoint)
    if changed:
        log.info("resumed config differs from the checkpoint's in: %s", _describe(changed))
    return merged


def _describe(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in list(diff.items())[:8])


def _check_folder(ckpt_path: str, output_dir: Path) -> None:
    """A run resumes in its own folder: the checkpoint's config points its checkpoints and logs
    there, and only there does Lightning keep the best checkpoint's score."""
    run_dir = checkpoint_run_dir(ckpt_path)
    if run_dir is None:
        raise ConfigError(
            f"ckpt_path={ckpt_path} is not in a run folder (<run>/checkpoints/*.ckpt); a run "
            f"resumes in its own folder, so resume from the checkpoint in the run's folder")
    if run_dir.resolve() != output_dir.resolve():
        raise ConfigError(
            f"hydra.run.dir={output_dir} differs from the folder of the run resumed from "
            f"{ckpt_path} ({run_dir}); leave hydra.run.dir unset to continue in the run's folder")


def _resume_wandb(cfg: DictConfig, checkpoint: dict[str, Any]) -> None:
    """Log into the checkpoint's W&B run (same id, resume='allow') when W&B is the logger."""
    logger = cfg.get("logger")
    if not logger or not str(logger.get("_target_", "")).endswith("WandbLogger"):
        return
    state = (checkpoint.get("callbacks") or {}).get("ResumeState") or {}
    run_id = state.get("wandb_run_id")
    if run_id:
        logger.id = str(run_id)
        logger.resume = "allow"
