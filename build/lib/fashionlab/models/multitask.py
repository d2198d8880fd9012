"""A backbone shared by one classification head per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fashionlab.models.heads import build_head
from fashionlab.tasks import TaskSpec


def feature_dim(backbone: nn.Module) -> int:
    """Width of a timm model's pooled output with num_classes=0 (pre-logits width where the
    model has a pre-logits block, e.g. VGG's 4096)."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


class MultiTaskNet(nn.Module):
    """Backbone features -> {task: logits}. `embed` gives the pooled (pre-head) features;
    `embedding`, when set (models.embedding.ProjectionHead), the retrieval embedding on them."""

    def __init__(self, backbone: nn.Module, tasks: list[TaskSpec], head: Mapping[str, Any],
                 embedding: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.task_names = [t.name for t in tasks]
        features = feature_dim(backbone)
        self.heads = nn.ModuleDict(
            {t.name: build_head(features, t.num_classes, **dict(head)) for t in tasks}
        )
        self.embedding = embedding

    def search_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """The searchable embedding of pooled features: the projection head's output, else the
        features themselves; L2-normalised, float32."""
        if self.embedding is not None:
            return self.embedding(features)
        return F.normalize(features.float(), dim=-1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pooled features and {task: logits} of one forward pass."""
        features = self.backbone(images)
        return features, {name: head(features) for name, head in self.heads.items()}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features_and_logits(images)[1]
