"""Test-only: run train.py with a callback that records, per rank and epoch, the `index` of every
train batch (`<run dir>/seen-<epoch>-<rank>.json`). Use it with trainer.strategy=ddp_spawn: the
spawned processes get the callback with the trainer (a subprocess launcher would rerun train.py
without it).

    python tests/record_batches.py train.py <overrides>
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback


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

    from record_batches import RecordBatches as Recorder  # importable by name (ddp_spawn pickles it)

    from fashionlab.training import run as training_run

    configured = training_run.build_callbacks

    def build_callbacks(cfg, has_logger):
        return [*configured(cfg, has_logger), Recorder()]

    training_run.build_callbacks = build_callbacks
    script = sys.argv.pop(1)
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")
