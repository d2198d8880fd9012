"""Test-only Lightning callback: SIGKILL the training process at a chosen global step.

Run as `python tests/kill_switch.py train.py <overrides>`: it adds the callback to every run
(outside the config, so a checkpoint's config stays within the loading allow-list) and runs
train.py; the callback acts only when FASHIONLAB_TEST_KILL_AT_STEP is set, so the resumed run is
not killed again.
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


if __name__ == "__main__":
    import runpy
    import sys

    from fashionlab.training import run as training_run

    configured = training_run.build_callbacks

    def build_callbacks(cfg, has_logger):
        return [*configured(cfg, has_logger), KillAtStep()]

    training_run.build_callbacks = build_callbacks
    script = sys.argv.pop(1)
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
