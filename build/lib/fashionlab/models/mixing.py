"""Mixup / CutMix of training batches (timm.data.Mixup) for every task at once.

timm's Mixup mixes the images and one target. Here it mixes the images and an identity target
`arange(batch)`: the soft target it returns is then the batch's mixing matrix M (row i: the weight
of each image in mixed image i), and every task's target becomes M @ one_hot(labels) (multiclass)
or M @ labels (multilabel), with the same lambda and partners for all tasks. A mixed label is
unknown (-1) where any image it draws on has an unknown label. Label smoothing is left to the loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import Mixup

from fashionlab.errors import ConfigError
from fashionlab.tasks import TaskSpec

MODES = ("batch", "pair", "elem")


class BatchMixer:
    """Mixes a batch's images and all its tasks' targets; built from `model.mixup`."""

    def __init__(
        self,
        tasks: list[TaskSpec],
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: list[float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"model.mixup.mode is {mode!r}; expected one of {', '.join(MODES)}")
        if min(mixup_alpha, cutmix_alpha) < 0 or not 0 <= prob <= 1 or not 0 <= switch_prob <= 1:
            raise ConfigError("model.mixup: alphas must be >= 0, prob and switch_prob within [0, 1]")
        self.tasks = tasks
        self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                           cutmix_minmax=cutmix_minmax, prob=prob, switch_prob=switch_prob,
                           mode=mode, correct_lam=correct_lam, label_smoothing=0.0)

    @staticmethod
    def enabled(options: Mapping[str, Any] | None) -> bool:
        """Whether `model.mixup` turns mixing on (an alpha above 0 or a cutmix_minmax)."""
        options = options or {}
        return (float(options.get("mixup_alpha") or 0) > 0 or float(options.get("cutmix_alpha") or 0) > 0
                or options.get("cutmix_minmax") is not None)

    def mixing_matrix(self, images: torch.Tensor) -> torch.Tensor:
        """Mix `images` in place; return M (batch x batch, rows sum to 1). An odd batch's last image
        is left as it is (timm mixes even batches)."""
        n = images.shape[0] - images.shape[0] % 2
        matrix = torch.eye(images.shape[0], device=images.device)
        if n:
            self.mixup.num_classes = n
            mixed, soft = self.mixup(images[:n], torch.arange(n, device=images.device))
            images[:n] = mixed
            matrix[:n, :n] = soft.to(matrix.dtype)
        return matrix

    def __call__(
        self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mixed images (in place) and soft targets per task (float; rows/entries of -1 unknown)."""
        mixed: dict[str, torch.Tensor] = {}
        with torch.autocast(images.device.type, enabled=False):  # exact float32 targets under AMP
            matrix = self.mixing_matrix(images)
            for task in self.tasks:
                target = targets[task.name]
                dense = (F.one_hot(target.clamp(min=0), task.num_classes) if task.kind == "multiclass"
                         else target.clamp(min=0))
                soft = matrix @ dense.float()
                soft[(matrix @ (target < 0).float()) > 0] = -1.0
                mixed[task.name] = soft
        return images, mixed
