"""How many optimizer steps a fit takes and when the backbone starts training (used by the
LightningModule's optimizer setup and the freeze callback)."""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

log = logging.getLogger(__name__)


AUTO = "auto"


def resolve_freeze_epochs(freeze_epochs: Any, pretrained: bool) -> int:
    """training.freeze_epochs as a number: `auto` is 1 epoch for transferred (pretrained) weights
    and 0 for a randomly initialised backbone (freezing random features only trains a head on
    noise); an explicit number is kept as asked."""
    if freeze_epochs is None or freeze_epochs == AUTO:
        return 1 if pretrained else 0
    return int(freeze_epochs)


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
