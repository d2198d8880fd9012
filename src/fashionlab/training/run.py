"""One training run from a composed config: fit, test the best checkpoint, write the run folder."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from fashionlab.config_safety import check_resume_path
from fashionlab.data.datamodule import MultiTaskDataModule
from fashionlab.data.loader_settings import check_workers
from fashionlab.errors import ConfigError, DistributedJoinError
from fashionlab.fileio import write_json
from fashionlab.models.backbones import check_backbone_name, resolve_image_size, resolve_preprocessing
from fashionlab.models.build import build_module, resolved_config  # noqa: F401  (resolved_config re-exported)
from fashionlab.models.module import MultiTaskClassifier
from fashionlab.models.steps import AUTO, resolve_freeze_epochs
from fashionlab.provenance import git_info
from fashionlab.redaction import config_secrets, masked_argv, scrub_files
from fashionlab.rundir import check_run_folder, launched_as_rank_zero
from fashionlab.training.callbacks import FreezeThenUnfreeze, ResumeState
from fashionlab.training.checkpoint_io import AtomicCheckpointIO
from fashionlab.training.multinode import join_launch
from fashionlab.training.reporting import (
    TrainingStats,
    finish_wandb,
    flat_metrics,
    log_wandb_tables,
    summarise,
    write_task_tables,
)
from fashionlab.training.resume import begin_resume, keep_csv_history, record_resume
from fashionlab.training.speed import apply_matmul_precision, check_speed_settings, compile_backbone
from fashionlab.training.tensorboard_hparams import log_hparams
from fashionlab.training.wandb_logging import run_page_callbacks, update_run_summary

log = logging.getLogger(__name__)
#: How long a process of a scheduler's launch waits for the others (training.join_timeout_s).
DEFAULT_JOIN_TIMEOUT_S = 600.0


def build_datamodule(cfg: DictConfig) -> MultiTaskDataModule:
    return instantiate(cfg.data, _recursive_=False)


def build_model(cfg: DictConfig, datamodule: MultiTaskDataModule) -> MultiTaskClassifier:
    """The LightningModule for the data module's tasks (models.build.build_module, the path a
    checkpoint is loaded through as well)."""
    return build_module(cfg, datamodule.tasks)


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[Callback]:
    """The resume state (first: it reseeds before the others run), the configured callbacks minus
    those the trainer settings rule out, and the freeze schedule."""
    callbacks: list[Callback] = [ResumeState(cfg.seed)] + [
        instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None
    ]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not has_logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    freeze = resolve_freeze_epochs(cfg.training.get("freeze_epochs"),
                                   bool(cfg.backbone.get("pretrained", True)))
    callbacks.append(FreezeThenUnfreeze(freeze, cfg.training.train_bn_when_frozen))
    return callbacks


def build_logger(cfg: DictConfig) -> Any:
    if not cfg.get("logger"):
        return False
    return instantiate(cfg.logger)


# Keys that must hold numbers (a typo such as trainer.max_epochs=abc stops before any work).
NUMERIC_KEYS: dict[str, type] = {
    "seed": int, "trainer.max_epochs": int, "trainer.min_epochs": int, "trainer.max_steps": int,
    "trainer.accumulate_grad_batches": int, "trainer.log_every_n_steps": int,
    "data.batch_size": int, "data.eval_batch_size": int,
    "training.backbone_lr_scale": float,
    "optimizer.lr": float, "optimizer.weight_decay": float, "training.join_timeout_s": float,
}


def check_numbers(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first of NUMERIC_KEYS set to something other than a number."""
    for key, kind in NUMERIC_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None)
        allowed = (int,) if kind is int else (int, float)
        if value is not None and (isinstance(value, bool) or not isinstance(value, allowed)):
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{key}={value!r} must be {what}")
    if OmegaConf.select(cfg, "training.join_timeout_s", default=1) <= 0:
        raise ConfigError(f"training.join_timeout_s={cfg.training.join_timeout_s} must be above 0")
    check_workers(OmegaConf.select(cfg, "data.num_workers", default=0))  # a count or auto
    freeze = OmegaConf.select(cfg, "training.freeze_epochs", default=None)
    if freeze not in (AUTO, None) and (isinstance(freeze, bool) or not isinstance(freeze, int) or freeze < 0):
        raise ConfigError(f"training.freeze_epochs={freeze!r} must be a whole number >= 0 or auto "
                          f"(1 for pretrained weights, 0 for a randomly initialised backbone)")


def settle_freeze_epochs(cfg: DictConfig) -> int:
    """Replace training.freeze_epochs=auto by its number (models.steps.resolve_freeze_epochs) and
    say so; warn when an explicit number freezes a randomly initialised backbone."""
    pretrained = bool(cfg.backbone.get("pretrained", True))
    asked = cfg.training.get("freeze_epochs", AUTO)
    epochs = resolve_freeze_epochs(asked, pretrained)
    with open_dict(cfg):
        cfg.training.freeze_epochs = epochs
    if asked == AUTO:
        log.info("training.freeze_epochs=auto: %d (%s)", epochs,
                 "pretrained backbone" if pretrained else "random initialisation: nothing to freeze")
    elif epochs > 0 and not pretrained:
        log.warning("training.freeze_epochs=%d freezes a randomly initialised backbone "
                    "(backbone.pretrained=false): the heads train on random features", epochs)
    return epochs


def build_trainer(cfg: DictConfig, callbacks: list[Callback], logger: Any,
                  run_dir: Path) -> L.Trainer:
    """The configured Trainer, writing checkpoints atomically (AtomicCheckpointIO).

    `trainer.plugins` may be a list of plugin configs or one factory returning a list
    (e.g. trainer=slurm's fashionlab.training.cluster.slurm_plugins)."""
    configured = cfg.trainer.get("plugins")
    built = instantiate(configured) if configured is not None else []
    plugins = list(built) if isinstance(built, list | tuple | ListConfig) else [built]
    plugins.append(AtomicCheckpointIO())
    return instantiate(cfg.trainer, callbacks=callbacks, logger=logger,
                       default_root_dir=str(run_dir), plugins=plugins)


def prepare_config(cfg: DictConfig) -> DictConfig:
    """Fill derived settings (data.image_size when auto, then the preprocessing record
    data.preprocess from timm) and check values and cross-group constraints before building."""
    check_numbers(cfg)
    check_backbone_name(cfg.backbone.name)
    check_speed_settings(cfg)
    settle_freeze_epochs(cfg)
    resolve_image_size(cfg.data, cfg.backbone)
    resolve_preprocessing(cfg.data, cfg.backbone)
    monitor_task = str(cfg.training.monitor).split("/")
    if len(monitor_task) == 3 and monitor_task[1] not in cfg.data.tasks:
        raise ConfigError(
            f"training.monitor={cfg.training.monitor!r} names task {monitor_task[1]!r}, "
            f"which data={cfg.data._target_.rsplit('.', 1)[-1]} does not declare "
            f"(tasks: {', '.join(cfg.data.tasks)})"
        )
    return cfg


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None,
          finish_wandb_run: bool = True) -> dict[str, Any]:
    """Fit, then validate and test the best checkpoint; write metrics.json into the run folder.

    `extra_callbacks` join the configured ones (e.g. a sweep's pruning callback). With
    `ckpt_path`, the run resumes in the checkpoint's own folder with the checkpoint's config plus
    the command line's overrides (see training/resume.py). The W&B run, if any, is finished
    whether the run succeeds (exit code 0) or raises (1), unless `finish_wandb_run=False` (a sweep
    tags the trial's run with its state, then finishes it).
    """
    exit_code = 1
    claimed: list[Path] = []  # the run folder, once this run may write into it
    try:
        metrics = _train(cfg, extra_callbacks, claimed)
        exit_code = 0
        return metrics
    except BaseException as err:
        if claimed and launched_as_rank_zero():
            record_failure(claimed[0], err)
        raise
    finally:
        if finish_wandb_run:
            finish_wandb(exit_code)


STATUS_FILE = "status.json"


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """<run>/status.json: running (from the start; a killed run keeps it), finished, failed or
    interrupted, with the time and, for a failure, the one-line error."""
    write_json(run_dir / STATUS_FILE, {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       **fields})


def record_failure(run_dir: Path, err: BaseException) -> None:
    """Write the failure into the run folder: status.json (failed or interrupted, with the error
    in one line) and the error in the run's log (train.log)."""
    interrupted = isinstance(err, KeyboardInterrupt)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    message = ("interrupted (KeyboardInterrupt)" if interrupted
               else lines[0] if lines else type(err).__name__)
    try:
        write_status(run_dir, "interrupted" if interrupted else "failed", error=message,
                     error_type=type(err).__name__)
    except OSError as write_error:  # the original error matters more
        log.warning("could not write %s: %s", run_dir / STATUS_FILE, write_error)
    log.error("run failed: %s", message)


def _train(cfg: DictConfig, extra_callbacks: list[Callback] | None,
           claimed: list[Path]) -> dict[str, Any]:
    started = time.time()
    check_resume_path(cfg.get("ckpt_path"))
    resume = None
    if cfg.get("ckpt_path"):
        cfg, resume = begin_resume(cfg)
    prepare_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    secrets = config_secrets(cfg)
    rank_zero = launched_as_rank_zero()  # only global rank 0 claims and writes the run folder
    if rank_zero:
        scrub_files((run_dir / ".hydra").glob("*.yaml"), secrets)  # Hydra saved them as given
        check_run_folder(run_dir, resuming=resume is not None)
        if resume is not None:
            record_resume(run_dir, cfg, resume)
    L.seed_everything(cfg.seed, workers=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    claimed.append(run_dir)
    if rank_zero:
        write_status(run_dir, "running")

    datamodule = build_datamodule(cfg)
    datamodule.report_dir = str(run_dir)
    model = build_model(cfg, datamodule)
    weights_source = getattr(model.net.backbone, "weights_source", "unknown")
    log.info("backbone %s: weights from %s", cfg.backbone.name, weights_source)
    apply_matmul_precision(cfg)
    compile_backbone(model, cfg.training.get("compile", False),
                     cfg.training.get("compile_backend", "inductor"))
    logger = build_logger(cfg)
    if resume is not None and rank_zero:
        keep_csv_history(logger, resume)
    stats = TrainingStats()
    callbacks = [*build_callbacks(cfg, has_logger=bool(logger)), stats,
                 *run_page_callbacks(logger, cfg), *(extra_callbacks or [])]
    trainer = build_trainer(cfg, callbacks, logger, run_dir)
    if isinstance(logger, WandbLogger) and trainer.is_global_zero:
        with masked_argv(secrets):  # the W&B run starts here and records the command line
            experiment = logger.experiment
        experiment.config.update(model.hparams["config"], allow_val_change=True)

    fit(trainer, model, datamodule, cfg)

    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    results = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    stages = ["val"]
    if cfg.get("test", True):
        results += trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        stages.append("test")

    metrics: dict[str, Any] = flat_metrics(results)
    if trainer.is_global_zero:
        for stage in stages:
            if stage in model.results:
                write_task_tables(run_dir, stage, datamodule.tasks, model.results[stage])
                if isinstance(logger, WandbLogger):
                    log_wandb_tables(logger.experiment, stage, datamodule.tasks,
                                     model.results[stage])
        metrics.update(
            seed=int(cfg.seed),
            data_fingerprint=datamodule.fingerprint(),
            **datamodule.data_stats(),
            backbone=str(cfg.backbone.name),
            backbone_weights=weights_source,
            best_checkpoint=best,
            epochs_completed=int(trainer.current_epoch),
            global_step=int(trainer.global_step),
            resumed_from=cfg.get("ckpt_path"),
            duration_s=round(time.time() - started, 1),
            **stats.as_dict(model),
            **git_info(cfg.paths.root_dir),
        )
        write_json(run_dir / "metrics.json", metrics, sort_keys=True)
        write_status(run_dir, "finished")
        update_run_summary(logger, callbacks, metrics)
        log_hparams(logger, cfg, metrics, int(trainer.global_step))
        log.info("run folder: %s", run_dir)
        log.info("%s", summarise(metrics, [k for k in metrics if k.endswith("/acc")]))
    return metrics


def fit(trainer: L.Trainer, model: MultiTaskClassifier, datamodule: MultiTaskDataModule,
        cfg: DictConfig) -> None:
    """trainer.fit, after joining the other processes of a scheduler's launch (at most
    training.join_timeout_s); a process that loses them before the process group exists stops
    with one line instead of torch's traceback."""
    import torch.distributed as dist

    timeout_s = float(cfg.training.get("join_timeout_s", DEFAULT_JOIN_TIMEOUT_S))
    join_launch(trainer, timeout_s)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except dist.DistError as err:
        if dist.is_available() and dist.is_initialized():
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DistributedJoinError(
            f"rank {trainer.global_rank} of {trainer.world_size} lost the other processes while "
            f"starting the process group at {os.environ.get('MASTER_ADDR')}:"
            f"{os.environ.get('MASTER_PORT')} ({first}); see the first failing process's error"
        ) from err
