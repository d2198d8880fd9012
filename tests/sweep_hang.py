"""Test-only: run sweep.py with one of this worker's trials hanging in training until it is killed.

`python tests/sweep_hang.py sweep.py <args>`: when FASHIONLAB_TEST_HANG_AT_TRIAL=N is set, the N-th
trial this process runs (0-based) adds a Lightning callback that, at its first training batch,
writes FASHIONLAB_TEST_HANG_MARK (a file path) and then waits forever — mid-trial, heartbeats running.
The test polls for the file, then sends SIGKILL or SIGINT. Without the variable, sweep.py runs as is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ENV = "FASHIONLAB_TEST_HANG_AT_TRIAL"
MARK_ENV = "FASHIONLAB_TEST_HANG_MARK"


class HangInTraining(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        Path(os.environ[MARK_ENV]).write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)


if __name__ == "__main__":
    import runpy
    import sys

    from fashionlab.sweep import objective

    real_train = objective.train
    calls = []

    def train(cfg, extra_callbacks=None, finish_wandb_run=True):
        callbacks = list(extra_callbacks or [])
        if os.environ.get(ENV) is not None and len(calls) == int(os.environ[ENV]):
            callbacks.append(HangInTraining())
        calls.append(1)
        return real_train(cfg, extra_callbacks=callbacks, finish_wandb_run=finish_wandb_run)

    objective.train = train
    script = sys.argv.pop(1)
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
