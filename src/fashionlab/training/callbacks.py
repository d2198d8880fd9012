"""Training callbacks specific to transfer learning."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import nn

from fashionlab.training.schedulers import plan_steps

log = logging.getLogger(__name__)


def set_backbone_trainable(backbone: nn.Module, trainable: bool, train_bn: bool) -> None:
    """Freeze or unfreeze a backbone. Frozen BatchNorm layers also stop updating their statistics
    unless `train_bn` is set."""
    for module in backbone.modules():
        is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
        grad = trainable or (is_bn and train_bn)
        for param in module.parameters(recurse=False):
            param.requires_grad_(grad)
        if is_bn:
            module.train(trainable or train_bn)


class FreezeThenUnfreeze(Callback):
    """Train only the heads for `freeze_epochs` epochs' worth of optimizer steps, then the whole
    network (the step from `schedulers.plan_steps`, as the backbone's learning-rate schedule, so
    a run bounded by trainer.max_steps unfreezes it too).

    The backbone's parameters stay in the optimizer (with their own, lower learning rate)
    from the start; frozen parameters simply get no gradient. The state follows
    `trainer.global_step`, so a resumed run lands in the right phase.
    """

    def __init__(self, freeze_epochs: int = 0, train_bn: bool = False) -> None:
        self.freeze_epochs = int(freeze_epochs)
        self.train_bn = train_bn
        self.unfreeze_step = 0
        self._frozen: bool | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.unfreeze_step = plan_steps(trainer, self.freeze_epochs).unfreeze
        self._frozen = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply(trainer, pl_module, force=True)  # also puts frozen BatchNorm layers back in eval

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._apply(trainer, pl_module)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule, force: bool = False) -> None:
        frozen = trainer.global_step < self.unfreeze_step
        if frozen == self._frozen and not force:
            return
        set_backbone_trainable(pl_module.net.backbone, not frozen, self.train_bn)
        if frozen != self._frozen and self.freeze_epochs > 0:
            log.info("step %d: backbone %s", trainer.global_step, "frozen" if frozen else "unfrozen")
        self._frozen = frozen
