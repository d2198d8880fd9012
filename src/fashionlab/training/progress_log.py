"""Progress as log lines for output that is not a terminal (nohup, SLURM, `> train.log`): a
progress bar there writes nothing readable for long stretches, so a line at most every
`every_s` seconds says where the fit is (epoch, step, images/s, ETA), in the run's log too."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from fashionlab.errors import ConfigError

log = logging.getLogger(__name__)
WHEN = ("auto", "always", "never")


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s` or `42s`."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressLog(Callback):
    """A log line `epoch E/N, step S/T (batch B/n), X images/s, ETA ...` at most every `every_s`
    seconds while training (and one at the end of each epoch), when `when` is `always`, or `auto`
    and stdout is not a terminal."""

    def __init__(self, every_s: float = 60.0, when: str = "auto") -> None:
        super().__init__()
        if when not in WHEN:
            raise ConfigError(f"callbacks.progress_log.when={when!r}; expected one of {', '.join(WHEN)}")
        self.every_s = float(every_s)
        self.enabled = when == "always" or (when == "auto" and not sys.stdout.isatty())
        self.images = 0
        self.started = self.last = 0.0
        self.start_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = self.last = time.perf_counter()
        self.start_step = trainer.global_step
        self.images = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        images = batch["image"] if isinstance(batch, Mapping) else batch[0]
        self.images += int(images.shape[0]) * trainer.world_size
        if self.enabled and trainer.is_global_zero and time.perf_counter() - self.last >= self.every_s:
            self._log(trainer, batch_idx + 1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled and trainer.is_global_zero:
            self._log(trainer, None)

    def _log(self, trainer: L.Trainer, batch: int | None) -> None:
        now = time.perf_counter()
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        steps = trainer.global_step - self.start_step
        total = trainer.estimated_stepping_batches
        eta = ""
        if steps > 0 and math.isfinite(total):
            eta = f", ETA {duration((total - trainer.global_step) * elapsed / steps)}"
        batches = trainer.num_training_batches
        where = (f" (batch {batch}/{batches})" if batch is not None and math.isfinite(batches)
                 else " (end of epoch)" if batch is None else f" (batch {batch})")
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        steps_total = f"/{int(total)}" if math.isfinite(total) else ""
        log.info("epoch %d%s, step %d%s%s, %.1f images/s%s", trainer.current_epoch + 1, epochs,
                 trainer.global_step, steps_total, where, self.images / elapsed, eta)
