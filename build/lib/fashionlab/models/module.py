"""LightningModule for multi-task image classification with a pretrained backbone."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from torch.optim import Optimizer

from fashionlab.errors import ConfigError
from fashionlab.models.embedding import MetricLoss
from fashionlab.models.hierarchy import constrained_predictions
from fashionlab.models.losses import MultiTaskLoss
from fashionlab.models.metrics import StageMetrics, to_probs
from fashionlab.models.mixing import BatchMixer
from fashionlab.models.multitask import MultiTaskNet
from fashionlab.models.steps import plan_steps
from fashionlab.tasks import TaskSpec, tasks_to_config

STAGES = ("train", "val", "test")


class MultiTaskClassifier(L.LightningModule):
    """Shared backbone, one head per task, summed task losses and per-task metrics.

    Optimizer parameter groups: `heads` (with the embedding projection, if any) at the optimizer's
    lr, `backbone` at lr * backbone_lr_scale, and `metric_loss` (the metric loss's own weights or
    proxies, `embedding=arcface` etc.) at lr * embedding.lr_mult; the backbone's schedule starts
    when it is unfrozen, after `freeze_epochs` epochs' worth of steps (`models.steps.plan_steps`).
    `results[stage]` keeps the last per-class F1 and confusion matrices of each task for reporting.

    `mixup` (model.mixup: timm Mixup/CutMix options) mixes training batches and trains every task
    on the mixed soft targets; train metrics then compare predictions on the mixed images with the
    un-mixed labels (so they read lower than validation metrics).

    `metric_loss` (models.embedding.MetricLoss) adds weight * its loss on the projection head's
    embeddings (`net.embedding`) to the task losses, logged as `<stage>/embedding/loss`.
    """

    def __init__(
        self,
        net: MultiTaskNet,
        tasks: list[TaskSpec],
        criterion: MultiTaskLoss,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr_scale: float = 1.0,
        freeze_epochs: int = 0,
        channels_last: bool = False,
        config: dict | None = None,
        mixup: Mapping[str, Any] | None = None,
        metric_loss: MetricLoss | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config or {}, "tasks": tasks_to_config(tasks)})
        self.net = net
        self.tasks = tasks
        self.criterion = criterion
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.freeze_epochs = int(freeze_epochs)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.stage_metrics = torch.nn.ModuleDict({f"{s}_metrics": StageMetrics(tasks)
                                                  for s in STAGES})
        self.results: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        self.mixer = BatchMixer(tasks, **mixup) if BatchMixer.enabled(mixup) else None
        if metric_loss is not None and self.mixer is not None:
            raise ConfigError(f"embedding={metric_loss.name} needs each image's own label; it cannot "
                              f"train on mixed images (set model.mixup alphas to 0, or embedding=none)")
        self.metric_loss = metric_loss

    def embedding_info(self) -> dict[str, Any]:
        """Which embedding the model searches with: the projection head (its loss, dim, task) or
        the pooled features."""
        if self.net.embedding is None:
            return {"source": "pooled", "loss": "none"}
        return {"source": "projection", "loss": self.metric_loss.name if self.metric_loss else None,
                "task": self.metric_loss.task if self.metric_loss else None,
                "dim": int(self.net.embedding.proj.out_features)}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "class_counts"):
            datamodule.setup(stage)
            counts = datamodule.class_counts("train")
            self.criterion.set_class_counts(counts, len(datamodule.splits["train"]))

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        images, loss_targets = batch["image"], batch["targets"]
        if stage == "train" and self.mixer is not None:
            images, loss_targets = self.mixer(images, loss_targets)
        if self.metric_loss is None:
            logits = self(images)
            loss, parts = self.criterion(logits, loss_targets)
        else:
            features, logits = self.net.features_and_logits(
                images.contiguous(memory_format=self.memory_format))
            loss, parts = self.criterion(logits, loss_targets)
            metric = self.metric_loss(self.net.embedding(features), batch["targets"][self.metric_loss.task])
            parts["embedding"] = metric
            loss = loss + self.metric_loss.weight * metric
        batch_size = batch["image"].shape[0]
        self.stage_metrics[f"{stage}_metrics"].update(logits, batch["targets"])
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True,
                 sync_dist=not on_step, batch_size=batch_size)
        for name, value in parts.items():
            self.log(f"{stage}/{name}/loss", value, on_step=False, on_epoch=True,
                     sync_dist=True, batch_size=batch_size)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        """One pass of `trainer.predict` (inference.embed): the batch's dataset `index`, its
        `targets` when it has them, the searchable embedding (`embeddings`, float32, L2-normalised:
        the projection head's output when the model has one, else the pooled features) and,
        per task, `probs` (softmax; multilabel: sigmoid) and `preds` (hierarchy-constrained class
        indices; multilabel: multi-hot), all from one forward pass."""
        images = batch["image"].contiguous(memory_format=self.memory_format)
        features, logits = self.net.features_and_logits(images)
        out = {"index": batch["index"], "embeddings": self.net.search_embedding(features),
               "probs": {t.name: to_probs(t, logits[t.name]).float() for t in self.tasks},
               "preds": constrained_predictions(self.tasks, logits)}
        if batch.get("targets"):
            out["targets"] = batch["targets"]
        return out

    def _end_epoch(self, stage: str) -> None:
        metrics = self.stage_metrics[f"{stage}_metrics"]
        scalars = metrics.compute(stage)
        primary = f"{stage}/{self.tasks[0].name}/acc"
        self.log(primary, scalars.pop(primary), prog_bar=True)
        self.log_dict(scalars)
        if stage != "train" and not self.trainer.sanity_checking:
            self.results[stage] = metrics.details()
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._end_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def configure_optimizers(self) -> Any:
        backbone = list(self.net.backbone.parameters())
        backbone_ids = {id(p) for p in backbone}
        heads = [p for p in self.net.parameters() if id(p) not in backbone_ids]
        groups = [{"params": heads, "name": "heads"}, {"params": backbone, "name": "backbone"}]
        own = list(self.metric_loss.parameters()) if self.metric_loss is not None else []
        if own:
            groups.append({"params": own, "name": "metric_loss"})
        optimizer = self.optimizer_factory(groups)
        base_lr = optimizer.param_groups[0]["lr"]
        optimizer.param_groups[1]["lr"] = base_lr * self.backbone_lr_scale
        if own:
            optimizer.param_groups[2]["lr"] = base_lr * self.metric_loss.lr_mult
        if self.scheduler_factory is None:
            return optimizer
        plan = plan_steps(self.trainer, self.freeze_epochs)
        if not math.isfinite(plan.total):
            raise ConfigError("trainer.max_epochs=-1 trains without end, but the learning-rate "
                              "schedule needs the number of steps: set trainer.max_steps")
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(plan.total), group_starts=[0, plan.unfreeze] + [0] * len(groups[2:]),
            steps_per_epoch=plan.per_epoch,
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
