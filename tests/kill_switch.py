"""Test-only Lightning callback: SIGKILL the training process at a chosen global step.

Used through the config (`+callbacks.kill._target_=kill_switch.KillAtStep`, with tests/ on
PYTHONPATH); it acts only when FASHIONLAB_TEST_KILL_AT_STEP is set, so the resumed run, whose
config comes from the checkpoint, builds the same callback and is not killed again.
"""

from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback

ENV = "FASHIONLAB_TEST_KILL_AT_STEP"


class KillAtStep(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = os.environ.get(ENV)
        if step is not None and trainer.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)
