"""Learning-rate schedules, built per run once the number of optimizer steps is known."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_ratio: float = 0.05,
    warmup_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up from 0 to each group's lr, then cosine decay to min_lr_ratio * lr."""
    total_steps = max(1, int(total_steps))
    warmup = int(warmup_steps if warmup_steps is not None else round(warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant(optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """Keep every group's learning rate fixed."""
    return LambdaLR(optimizer, lambda step: 1.0)
