"""The W&B run page of a training run: the dataset and model artifacts (lineage dataset -> model),
the best epoch's summary, and a table of misclassified validation images per task.

`WandbLogger` is Lightning's logger with `log_model` allowed offline (Lightning refuses it; wandb
records offline artifacts and `wandb sync` uploads them with the run) and the project's metadata
on the model artifact; `WandbRunPage` is the callback that fills the page (run.py adds it when
the logger is a `WandbLogger`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.utilities import _scan_checkpoints
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from fashionlab.fileio import write_json
from fashionlab.models.hierarchy import constrained_predictions
from fashionlab.models.metrics import to_probs
from fashionlab.provenance import git_info
from fashionlab.wandb_utils import stage_in_folder, thumbnail, use_artifact

log = logging.getLogger(__name__)

#: Written into the run folder and logged as the run's dataset artifact (its content names the data).
DATA_IDENTITY_FILE = "data_identity.json"
#: The checkpoint key naming the W&B run and model artifact it belongs to (read by evaluate.py).
CHECKPOINT_KEY = "wandb"


class WandbLogger(LightningWandbLogger):
    """Lightning's `WandbLogger` plus:

    - `log_model` works offline too: the checkpoint is recorded in the offline run and uploaded by
      `wandb sync`; with the default `add_file_policy="immutable"` nothing is copied, the record
      points at the run folder's checkpoint (sync from the machine that holds the run folder);
    - `log_last`: with `log_model=true`, also log `last.ckpt` (else only the best checkpoint,
      aliases `best` and `latest`);
    - the model artifact's metadata adds `artifact_metadata` (data fingerprint, commit; set by
      `WandbRunPage`) to Lightning's (score, file name, ModelCheckpoint settings);
    - `log_images`: rows per task of the misclassified validation images table (0: none);
    - the run is named after its folder unless `name` is given, and is in a group: `group` (a
      multirun's folder, a sweep's study) or else its own name, where its evaluations join it;
    - W&B stages its tables and images inside the run folder (`wandb_utils.stage_in_folder`).
    """

    def __init__(self, *args: Any, offline: bool = False, log_model: bool | str = False,
                 log_last: bool = False, log_images: int = 64,
                 add_file_policy: str = "immutable", **kwargs: Any) -> None:
        if isinstance(kwargs.get("config"), DictConfig):  # e.g. a sweep trial's `optuna` block
            kwargs["config"] = OmegaConf.to_container(kwargs["config"], resolve=True)
        folder = Path(kwargs.get("save_dir") or kwargs.get("dir") or ".").absolute()
        kwargs["name"] = kwargs.get("name") or folder.name
        kwargs["group"] = kwargs.get("group") or kwargs["name"]
        stage_in_folder(folder)
        super().__init__(*args, offline=offline, log_model=False, add_file_policy=add_file_policy,
                         **kwargs)
        self._log_model = log_model
        self.log_last = bool(log_last)
        self.log_images = int(log_images)
        self.artifact_metadata: dict[str, Any] = {}

    @property
    def model_artifact_name(self) -> str:
        """The model artifact's name (Lightning's default: `model-<run id>`)."""
        return self._checkpoint_name or f"model-{self.experiment.id}"

    def _scan_and_log_checkpoints(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Lightning's checkpoint logging, with last.ckpt only on request and the project's metadata."""
        import wandb

        best = checkpoint_callback.best_model_path
        for mtime, path, score, _tag in _scan_checkpoints(checkpoint_callback, self._logged_model_time):
            if path != best and not self.log_last:
                continue
            metadata = {
                "score": score.item() if isinstance(score, Tensor) else score,
                "original_filename": Path(path).name,
                "monitor": checkpoint_callback.monitor, "mode": checkpoint_callback.mode,
                **self.artifact_metadata,
            }
            self._checkpoint_name = self.model_artifact_name
            artifact = wandb.Artifact(name=self._checkpoint_name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt", policy=self.add_file_policy)
            self.experiment.log_artifact(artifact, aliases=["latest", "best"] if path == best else ["latest"])
            self._logged_model_time[path] = mtime


def data_identity_summary(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The data identity without its item lists: fingerprint and per split the count and hash."""
    return {"fingerprint": identity["fingerprint"],
            "splits": {name: {"count": split["count"], "sha256": split["sha256"]}
                       for name, split in identity.get("splits", {}).items()}}


def is_better(value: float, best: float | None, mode: str) -> bool:
    """Strictly better, as ModelCheckpoint compares (the first of equal epochs stays the best)."""
    return best is None or (value > best if mode == "max" else value < best)


class WandbRunPage(Callback):
    """Fills the W&B run page of a training run (rank zero only):

    - at fit start: `define_metric(monitor, summary=mode)` (the summary holds the best epoch's
      value), the dataset artifact (`dataset-<data module>`: `data_identity.json`, the fingerprint
      and split hashes) declared the run's input, and the model artifact's metadata;
    - in each checkpoint: the run id and model artifact name (key `wandb`, read by evaluate.py);
    - during `trainer.validate` (run.py validates the best checkpoint after fitting): a table per
      multiclass task of up to `logger.log_images` misclassified validation images (in dataset
      order) with true class, predicted class and confidence.
    """

    def __init__(self, logger: WandbLogger, monitor: str, mode: str, run_dir: str | Path,
                 root_dir: str | Path) -> None:
        self.logger = logger
        self.monitor = monitor
        self.mode = mode
        self.run_dir = Path(run_dir)
        self.root_dir = Path(root_dir)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._rows: dict[str, list[list[Any]]] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Kept in checkpoints, so that a resumed run still knows its best epoch."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_epoch = state_dict.get("best_epoch")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        import wandb

        run = self.logger.experiment
        run.define_metric(self.monitor, summary=self.mode)
        self.logger.artifact_metadata.update(git_info(self.root_dir))
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "data_identity"):  # fitted on bare loaders: no data to name
            return
        identity = data_identity_summary(datamodule.data_identity())
        self.logger.artifact_metadata["data_fingerprint"] = identity["fingerprint"]
        path = self.run_dir / DATA_IDENTITY_FILE
        write_json(path, identity, sort_keys=True)
        dataset = wandb.Artifact(f"dataset-{type(datamodule).__name__}", type="dataset",
                                 metadata={**identity, "root": str(getattr(datamodule, "root", ""))})
        dataset.add_file(str(path), name=DATA_IDENTITY_FILE, policy="immutable")
        use_artifact(run, dataset)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.is_global_zero:
            run = self.logger.experiment
            checkpoint[CHECKPOINT_KEY] = {"run_id": run.id, "project": run.project, "group": run.group,
                                          "name": run.name, "model_artifact": self.logger.model_artifact_name}

    # The misclassified images: collected only in trainer.validate, not in fit's validation loops.
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        collect = trainer.state.fn == TrainerFn.VALIDATING and trainer.is_global_zero \
            and self.logger.log_images > 0
        self._rows = {t.name: [] for t in pl_module.tasks if t.kind == "multiclass"} if collect else None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        limit = self.logger.log_images
        if not self._rows or all(len(rows) >= limit for rows in self._rows.values()):
            return
        tasks = [t for t in pl_module.tasks if t.name in self._rows]
        with torch.no_grad():
            logits = pl_module(batch["image"])
        preds = constrained_predictions(tasks, logits)
        for task in tasks:
            probs = to_probs(task, logits[task.name]).float()
            target, pred = batch["targets"][task.name], preds[task.name]
            wrong = torch.nonzero((target >= 0) & (pred != target)).flatten().tolist()
            rows = self._rows[task.name]
            for i in wrong[: max(0, limit - len(rows))]:
                rows.append([int(batch["index"][i]), task.classes[int(target[i])],
                             task.classes[int(pred[i])], float(probs[i, pred[i]])])

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """While fitting: track the best epoch (as ModelCheckpoint, which runs after this hook, sees
        the monitor); in trainer.validate: log the misclassified images tables."""
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None and is_better(float(value), self.best_score, self.mode):
                self.best_score, self.best_epoch = float(value), int(trainer.current_epoch)
        if self._rows is None:
            return
        import wandb

        dataset = trainer.datamodule.splits["val"]
        payload = {f"val/{name}/misclassified": wandb.Table(
            columns=["image", "index", "true", "predicted", "confidence"],
            data=[[thumbnail(dataset.raw_image(row[0])), *row] for row in rows])
            for name, rows in self._rows.items()}
        self.logger.experiment.log(payload)
        self._rows = None

    def summary(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The run's final summary: metrics.json's numbers (the best checkpoint's val and test
        metrics) except the monitor, whose summary stays define_metric's best epoch value; plus
        the best epoch and the model artifact's name."""
        summary = {k: v for k, v in metrics.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and k != self.monitor}
        summary.update(best_epoch=self.best_epoch, best_score=self.best_score)
        if self.logger._log_model:
            summary["model_artifact"] = f"{self.logger.model_artifact_name}:best"
        return {k: v for k, v in summary.items() if v is not None}


def run_page_callbacks(logger: Any, cfg: Any) -> list[Callback]:
    """[WandbRunPage] when the run logs to W&B through the project's WandbLogger, else []."""
    if not isinstance(logger, WandbLogger):
        return []
    return [WandbRunPage(logger, str(cfg.training.monitor), str(cfg.training.monitor_mode),
                         cfg.paths.output_dir, cfg.paths.root_dir)]


def update_run_summary(logger: Any, callbacks: list[Callback], metrics: Mapping[str, Any]) -> None:
    """Write the final summary of a W&B run (WandbRunPage.summary when the page callback ran,
    else every number of metrics.json, as Lightning's own WandbLogger gets)."""
    if not isinstance(logger, LightningWandbLogger):
        return
    page = next((c for c in callbacks if isinstance(c, WandbRunPage)), None)
    summary = page.summary(metrics) if page is not None else {
        k: v for k, v in metrics.items() if isinstance(v, int | float)}
    logger.experiment.summary.update(summary)
