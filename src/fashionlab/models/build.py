"""The one construction path of the model: backbone, heads, loss and the LightningModule from a
training config, for a training run and for a checkpoint loaded back (inference.checkpoint)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fashionlab.models.backbones import create_backbone
from fashionlab.models.embedding import build_embedding
from fashionlab.models.losses import MultiTaskLoss
from fashionlab.models.module import MultiTaskClassifier
from fashionlab.models.multitask import MultiTaskNet, feature_dim
from fashionlab.models.steps import resolve_freeze_epochs
from fashionlab.redaction import masked_config
from fashionlab.tasks import TaskSpec


class Deferred:
    """A `_partial_` config node (optimizer, schedule) built only when first called, at fit time:
    building a module, for training or from a checkpoint, imports and runs nothing it names."""

    def __init__(self, node: Any, build: Callable[[Any], Any] = instantiate) -> None:
        self.node = node
        self.build = build
        self._factory: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._factory is None:
            self._factory = self.build(self.node)
        return self._factory(*args, **kwargs)

    def __repr__(self) -> str:
        target = self.node.get("_target_") if isinstance(self.node, Mapping | DictConfig) else self.node
        return f"Deferred({target})"


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's config as plain, resolved containers (Hydra's own node left out), secrets masked
    (what checkpoints, W&B and reports keep; see fashionlab.redaction)."""
    keys = [k for k in cfg if k != "hydra"]
    return masked_config(OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True))


def _plain(node: Any) -> dict[str, Any] | None:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_module(cfg: DictConfig, tasks: list[TaskSpec], pretrained: bool | None = None,
                 build: Callable[[Any], Any] = instantiate) -> MultiTaskClassifier:
    """The LightningModule of a training config: backbone (`pretrained` overrides
    backbone.pretrained; a checkpoint's weights replace them anyway), one head per task, the loss,
    the retrieval embedding head and its metric loss (`embedding`; none by default, and in
    checkpoints without the node), and the optimizer and schedule factories (`Deferred`, built
    by `build` at fit time) with training.backbone_lr_scale and training.freeze_epochs."""
    backbone_cfg = OmegaConf.to_container(cfg.backbone, resolve=True)
    if pretrained is not None:
        backbone_cfg["pretrained"] = pretrained
    backbone = create_backbone(**backbone_cfg)
    embedding = build_embedding(_plain(cfg.get("embedding")), feature_dim(backbone), tasks,
                                cfg.data.get("main_task") if cfg.get("data") else None, build)
    projection, metric_loss = embedding if embedding is not None else (None, None)
    net = MultiTaskNet(backbone, tasks, head=cfg.model.head, embedding=projection)
    training = cfg.get("training") or {}
    return MultiTaskClassifier(
        net=net,
        tasks=tasks,
        criterion=MultiTaskLoss(tasks, **cfg.model.loss),
        metric_loss=metric_loss,
        optimizer=Deferred(cfg.optimizer, build),
        scheduler=Deferred(cfg.scheduler, build) if cfg.get("scheduler") else None,
        backbone_lr_scale=training.get("backbone_lr_scale", 1.0),
        freeze_epochs=resolve_freeze_epochs(training.get("freeze_epochs", 0),
                                            bool(cfg.backbone.get("pretrained", True))),
        channels_last=cfg.model.get("channels_last", False),
        config=resolved_config(cfg),
        mixup=OmegaConf.to_container(cfg.model.mixup, resolve=True) if cfg.model.get("mixup") else None,
    )
