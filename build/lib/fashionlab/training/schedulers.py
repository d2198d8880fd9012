"""Learning-rate schedules, built per run once the number of optimizer steps is known.

Each factory takes `group_starts`: the step at which each parameter group starts training
(0 for the heads; the unfreeze step for the backbone). A group's schedule runs from its own
start to the end of training and holds its learning rate at 0 before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from fashionlab.models.steps import StepPlan, plan_steps  # noqa: F401  (re-exported)


def _per_group(
    optimizer: Optimizer,
    total_steps: int,
    group_starts: Sequence[int] | None,
    make: Callable[[int], Callable[[int], float]],
) -> LambdaLR:
    starts = list(group_starts or [0] * len(optimizer.param_groups))
    if len(starts) != len(optimizer.param_groups):
        raise ValueError(f"{len(starts)} group starts for {len(optimizer.param_groups)} groups")
    total_steps = max(1, int(total_steps))

    def shifted(start: int) -> Callable[[int], float]:
        start = min(int(start), total_steps - 1)
        inner = make(total_steps - start)
        return lambda step: 0.0 if step < start else inner(step - start)

    return LambdaLR(optimizer, [shifted(s) for s in starts])


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    group_starts: Sequence[int] | None = None,
    warmup_ratio: float = 0.05,
    min_lr_ratio: float = 0.0,
    warmup_steps: int | None = None,
    warmup_epochs: float | None = None,
    steps_per_epoch: int | None = None,
) -> LambdaLR:
    """Per group: linear warm-up, then cosine to min_lr_ratio * lr. The warm-up lasts warmup_steps
    optimizer steps, else warmup_epochs epochs (of steps_per_epoch), else warmup_ratio of the
    group's steps; it is capped at the group's steps."""
    if warmup_epochs is not None and not steps_per_epoch:
        raise ValueError("warmup_epochs needs steps_per_epoch")

    def make(steps: int) -> Callable[[int], float]:
        if warmup_steps is not None:
            warmup = int(warmup_steps)
        elif warmup_epochs is not None:
            warmup = round(float(warmup_epochs) * int(steps_per_epoch or 0))
        else:
            warmup = round(warmup_ratio * steps)
        warmup = min(max(warmup, 0), steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, steps - warmup))
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        return factor

    return _per_group(optimizer, total_steps, group_starts, make)


def constant(
    optimizer: Optimizer,
    total_steps: int,
    group_starts: Sequence[int] | None = None,
    steps_per_epoch: int | None = None,
) -> LambdaLR:
    """Each group's learning rate fixed from its start."""
    return _per_group(optimizer, total_steps, group_starts, lambda steps: lambda step: 1.0)
