"""A backbone shared by one classification head per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fashionlab.data.tasks import TaskSpec
from fashionlab.models.heads import build_head


class MultiTaskNet(nn.Module):
    """Backbone features -> {task: logits}. `embed` gives the pooled (pre-head) features."""

    def __init__(self, backbone: nn.Module, tasks: list[TaskSpec], head: Mapping[str, Any]):
        super().__init__()
        self.backbone = backbone
        self.task_names = [t.name for t in tasks]
        features = backbone.num_features
        self.heads = nn.ModuleDict(
            {t.name: build_head(features, t.num_classes, **dict(head)) for t in tasks}
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        return {name: head(features) for name, head in self.heads.items()}
