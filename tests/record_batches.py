"""Test-only: run train.py with a callback that records, per rank and epoch, the `index` of every
train batch (`<run dir>/seen-<epoch>-<rank>.json`).

    python tests/record_batches.py <train.py overrides>

This file stays the process's script (sys.argv[0]), so that Lightning's DDP launcher, which
reruns the script for each further rank, reruns it with the callback.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]


class RecordBatches(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += [int(i) for i in batch["index"]]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        name = f"seen-{trainer.current_epoch}-{trainer.global_rank}.json"
        Path(trainer.default_root_dir, name).write_text(json.dumps(self.seen))
        self.seen = []


if __name__ == "__main__":
    import runpy
    import sys

    from fashionlab.training import run as training_run

    configured = training_run.build_callbacks

    def build_callbacks(cfg, has_logger):
        sys.argv[0] = __file__  # runpy.run_path set it to train.py; the DDP launcher reruns it
        return [*configured(cfg, has_logger), RecordBatches()]

    training_run.build_callbacks = build_callbacks
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
