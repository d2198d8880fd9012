"""Training callbacks specific to transfer learning."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import nn

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
    """Train only the heads for `freeze_epochs` epochs, then the whole network.

    The backbone's parameters stay in the optimizer (with their own, lower learning rate)
    from the start; frozen parameters simply get no gradient. The state follows
    `trainer.current_epoch`, so a resumed run lands in the right phase.
    """

    def __init__(self, freeze_epochs: int = 0, train_bn: bool = False) -> None:
        self.freeze_epochs = int(freeze_epochs)
        self.train_bn = train_bn

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = trainer.current_epoch < self.freeze_epochs
        set_backbone_trainable(pl_module.net.backbone, not frozen, self.train_bn)
        if trainer.current_epoch in (0, self.freeze_epochs) and self.freeze_epochs > 0:
            log.info("epoch %d: backbone %s", trainer.current_epoch,
                     "frozen" if frozen else "unfrozen")
