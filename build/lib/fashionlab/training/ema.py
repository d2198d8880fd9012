"""Exponential moving average (EMA) of the weights, on Lightning's EMAWeightAveraging.

During fit, validation runs on the averaged weights and every checkpoint's `state_dict` holds
them (the raw weights go to `current_model_state`, for resuming), so best.ckpt is picked on, and
holds, the EMA model. This subclass fixes three things for this project's train(): buffers that
the module registers in its own `setup` (balanced class weights) join the average; the average
lives on the training device; and evaluating a checkpoint after fit (validate/test with
ckpt_path) keeps the checkpoint's averaged weights instead of swapping in the last raw ones.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from fashionlab.errors import ConfigError


class EMAWeights(EMAWeightAveraging):
    """EMA of all parameters and buffers, updated after every `update_every_n_steps` optimizer
    steps from `update_starting_at_step` on: avg = decay * avg + (1 - decay) * weights."""

    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        device: str | None = None,
    ) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ConfigError(f"callbacks.ema.decay is {decay}; expected a number in (0, 1)")
        super().__init__(device=device, decay=float(decay),
                         update_every_n_steps=int(update_every_n_steps),
                         update_starting_at_step=update_starting_at_step)
        self.decay = float(decay)

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Copy buffers registered after the average was made; move it to the module's device."""
        average = self._average_model
        if average is None:
            return
        have = dict(average.module.named_buffers())
        for name, buffer in pl_module.named_buffers():
            if name not in have:
                owner, _, leaf = name.rpartition(".")
                average.module.get_submodule(owner)._buffers[leaf] = buffer.detach().clone()
        if len(list(average.module.buffers())) != len(list(pl_module.buffers())):
            raise RuntimeError("EMA: the averaged model's buffers do not match the module's")
        if self._device is None:
            average.to(pl_module.device)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_end(trainer, pl_module)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming a fit restores both models; otherwise the module keeps the checkpoint's
        `state_dict`, which is the average."""
        if self._fitting(trainer):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
