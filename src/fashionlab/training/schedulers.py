"""Learning-rate schedules, built per run once the number of optimizer steps is known.

Each factory takes `group_starts`: the step at which each parameter group starts training
(0 for the heads; the unfreeze step for the backbone). A group's schedule runs from its own
start to the end of training and holds its learning rate at 0 before it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger(__name__)


class StepPlan(NamedTuple):
    """Optimizer steps of a fit (`math.inf` when neither max_epochs nor max_steps ends it) and
    the step at which the backbone starts training."""

    total: float
    unfreeze: int
    per_epoch: int | None = None


def plan_steps(trainer: Any, freeze_epochs: int) -> StepPlan:
    """The steps a Lightning trainer will take and the backbone's unfreeze step.

    The unfreeze step is `freeze_epochs` epochs' worth of optimizer steps (from the train
    loader's length), whether the run is bounded by `trainer.max_epochs` or `trainer.max_steps`.
    When `max_steps` ends the run before that although the backbone was meant to train
    (max_epochs=-1, or max_epochs > freeze_epochs), it is unfrozen half-way instead; with
    max_epochs <= freeze_epochs it stays frozen, as asked.
    """
    total = float(trainer.estimated_stepping_batches)
    if trainer.train_dataloader is None:  # estimated_stepping_batches skips it for max_epochs=-1
        trainer.fit_loop.setup_data()
    batches = trainer.num_training_batches
    per_epoch = math.ceil(batches / trainer.accumulate_grad_batches) if math.isfinite(batches) else None
    if freeze_epochs <= 0:
        return StepPlan(total, 0, per_epoch)
    freeze_steps = freeze_epochs * per_epoch if per_epoch is not None else math.inf
    if freeze_steps < total:
        return StepPlan(total, int(freeze_steps), per_epoch)
    if not math.isfinite(total):  # endless run over a loader of unknown length
        return StepPlan(total, 0, per_epoch)
    if 0 < trainer.max_epochs <= freeze_epochs:
        return StepPlan(total, int(total), per_epoch)
    unfreeze = int(total) // 2
    log.warning("training.freeze_epochs=%d is %s optimizer steps but trainer.max_steps=%d ends the "
                "run before: the backbone is unfrozen half-way, at step %d", freeze_epochs,
                freeze_steps, trainer.max_steps, unfreeze)
    return StepPlan(total, unfreeze, per_epoch)


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
