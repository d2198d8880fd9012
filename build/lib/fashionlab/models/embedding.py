"""Retrieval embedding head: a projection of the pooled features, L2-normalised, trained by a
pytorch-metric-learning loss (conf/embedding/*.yaml) beside the classification heads."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from fashionlab.errors import ConfigError
from fashionlab.tasks import TaskSpec

#: What `embedding=none` (and a config without an `embedding` node) means.
NONE = "none"


class ProjectionHead(nn.Module):
    """Linear projection of the pooled features to `dim`, L2-normalised."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, int(dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(features).float(), dim=-1)


class MetricLoss(nn.Module):
    """A pytorch-metric-learning loss (and optional miner) on the projected embeddings and the
    labels of one multiclass task; items whose label is unknown (< 0) do not count. Its own
    parameters (class weights, proxies) train at the optimizer's lr * `lr_mult`."""

    def __init__(self, loss: nn.Module, task: str, weight: float = 1.0, lr_mult: float = 1.0,
                 miner: nn.Module | None = None, name: str = "") -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.task = task
        self.weight = float(weight)
        self.lr_mult = float(lr_mult)
        self.name = name

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        known = labels >= 0
        embeddings, labels = embeddings[known], labels[known]
        if len(labels) == 0:
            return embeddings.sum() * 0.0
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, indices_tuple=tuples)


def embedding_name(cfg: Mapping[str, Any] | None) -> str:
    """The configured embedding option (`none` when the config has no embedding node)."""
    return str((cfg or {}).get("name") or NONE)


def embedding_task(cfg: Mapping[str, Any], tasks: list[TaskSpec], main_task: str | None) -> TaskSpec:
    """The multiclass task whose labels the embedding learns: embedding.task, else the data's
    main task, else the first multiclass task."""
    name = cfg.get("task") or main_task
    multiclass = [t for t in tasks if t.kind == "multiclass"]
    if name is None:
        if not multiclass:
            raise ConfigError("embedding: the data has no multiclass task to learn the embedding from")
        return multiclass[0]
    found = next((t for t in tasks if t.name == name), None)
    if found is None or found.kind != "multiclass":
        raise ConfigError(f"embedding.task={name!r}: expected a multiclass task of the data "
                          f"({', '.join(t.name for t in multiclass) or 'none'})")
    return found


def _takes_sizes(cls: type) -> bool:
    """Whether a loss class is built with num_classes and embedding_size (its own weights or
    proxies), following `*args` up its base classes (e.g. SubCenterArcFaceLoss -> ArcFaceLoss)."""
    for base in cls.__mro__:
        init = base.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if "num_classes" in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values()):
            return False
    return False


def _with_sizes(node: Mapping[str, Any], num_classes: int, dim: int) -> dict[str, Any]:
    """The loss node with num_classes / embedding_size filled in where the loss takes them (its
    target is checked by the caller's `build` or, for a checkpoint, by config_safety first)."""
    node = dict(node)
    if "num_classes" in node or "embedding_size" in node:
        raise ConfigError("embedding.loss: num_classes and embedding_size come from the task and "
                          "embedding.dim; do not set them")
    from hydra._internal.utils import _locate

    if _takes_sizes(_locate(str(node["_target_"]))):
        node.update(num_classes=num_classes, embedding_size=dim)
    return node


def build_embedding(cfg: Mapping[str, Any] | None, in_features: int, tasks: list[TaskSpec],
                    main_task: str | None, build: Callable[[Any], Any] = instantiate,
                    ) -> tuple[ProjectionHead, MetricLoss] | None:
    """The projection head and its loss from the `embedding` config node; None for embedding=none.
    `build` instantiates the loss and miner nodes (a checkpoint's loading passes its safe one)."""
    name = embedding_name(cfg)
    if name == NONE:
        return None
    dim = cfg.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ConfigError(f"embedding.dim={dim!r}: expected a whole number >= 1")
    weight = cfg.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise ConfigError(f"embedding.weight={weight!r}: expected a number >= 0")
    if not cfg.get("loss"):
        raise ConfigError(f"embedding={name}: the option has no `loss` node")
    task = embedding_task(cfg, tasks, main_task)
    loss = build(_with_sizes(cfg["loss"], task.num_classes, dim))
    miner = build(dict(cfg["miner"])) if cfg.get("miner") else None
    metric = MetricLoss(loss, task.name, weight=weight, lr_mult=cfg.get("lr_mult", 1.0),
                        miner=miner, name=name)
    return ProjectionHead(in_features, dim), metric
