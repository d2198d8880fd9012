"""Embeddings and class probabilities of a trained model through Lightning's predict loop:
`trainer.predict` runs the module's `predict_step`, an `EmbeddingWriter` collects its outputs.

With `devices > 1` the data are sharded over that many processes (GPUs, or CPU processes with
gloo; Lightning's distributed sampler, without padding for prediction); each process writes its
shard to a folder and the shards are merged back into dataset order (`merge_shards`)."""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader

from fashionlab.models.module import MultiTaskClassifier

#: predict_step outputs kept per item (`preds` is recomputed from `probs` where it is needed).
KEPT = ("index", "embeddings", "probs", "targets")
SHARD_GLOB = "shard-*.npz"


def _flat(prediction: dict[str, Any]) -> dict[str, np.ndarray]:
    """{"embeddings": ..., "probs:<task>": ...} as CPU numpy arrays."""
    out: dict[str, np.ndarray] = {}
    for key in KEPT:
        value = prediction.get(key)
        if isinstance(value, dict):
            out.update({f"{key}:{name}": torch.as_tensor(v).cpu().numpy() for name, v in value.items()})
        elif value is not None:
            out[key] = torch.as_tensor(value).cpu().numpy()
    return out


class EmbeddingWriter(BasePredictionWriter):
    """Collects this process's predict_step outputs (`shard`: flat arrays, batch after batch);
    with several processes each one saves its shard as `folder/shard-<rank>.npz`."""

    def __init__(self, folder: str | Path | None = None) -> None:
        super().__init__(write_interval="batch")
        self.folder = None if folder is None else Path(folder)
        self.parts: list[dict[str, np.ndarray]] = []
        self.shard: dict[str, np.ndarray] | None = None

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.parts.append(_flat(prediction))

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        keys = self.parts[0].keys() if self.parts else ()
        self.shard = {k: np.concatenate([p[k] for p in self.parts]) for k in keys}
        self.parts = []
        if trainer.world_size > 1:
            if self.folder is None:
                raise ValueError("EmbeddingWriter: several processes need a folder to write shards to")
            np.savez(self.folder / f"shard-{trainer.global_rank:05d}.npz", **self.shard)
            trainer.strategy.barrier("embedding shards written")


def merge_shards(shards: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Shards concatenated and put in dataset order (by `index`; an item seen twice kept once)."""
    shards = [s for s in shards if s]
    if not shards:
        raise ValueError("extract: the data loader yielded no batches")
    merged = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
    _, first = np.unique(merged["index"], return_index=True)
    return {k: v[first] for k, v in merged.items()}


def read_shards(folder: str | Path) -> list[dict[str, np.ndarray]]:
    """The shards that the processes of a sharded run wrote into `folder`."""
    shards = []
    for path in sorted(Path(folder).glob(SHARD_GLOB)):
        with np.load(path) as data:
            shards.append({k: data[k] for k in data.files})
    return shards


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Without Lightning's per-trainer banner (GPU/TPU available), its worker-count hint and a
    torch/Lightning version deprecation notice, all repeated at each prediction."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def predict_arrays(module: MultiTaskClassifier, dataloader: DataLoader, progress: bool | None = None,
                   devices: int = 1, strategy: str = "ddp_spawn") -> dict[str, np.ndarray]:
    """`trainer.predict` of `module` over `dataloader` on the module's device type; with
    `devices > 1`, sharded over that many processes with `strategy`. Returns the merged flat arrays
    (see `_flat`) in dataset order; the module keeps its device and train/eval mode."""
    accelerator = "gpu" if module.device.type == "cuda" else "cpu"
    device, was_training = module.device, module.training
    show = sys.stderr.isatty() if progress is None else bool(progress)
    with tempfile.TemporaryDirectory(prefix="fashionlab-embed-") as folder, _quiet_lightning():
        writer = EmbeddingWriter(folder)
        trainer = L.Trainer(
            accelerator=accelerator, devices=int(devices),
            strategy="auto" if int(devices) == 1 else strategy,
            logger=False, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=show, callbacks=[writer], default_root_dir=folder,
        )
        try:
            trainer.predict(module, dataloaders=dataloader, return_predictions=False)
        finally:
            module.to(device).train(was_training)
        in_process = writer.shard is not None and trainer.world_size == 1
        return merge_shards([writer.shard] if in_process else read_shards(folder))


def extract(
    module: MultiTaskClassifier,
    dataloader: DataLoader,
    return_targets: bool = False,
    progress: bool | None = None,
    devices: int = 1,
    strategy: str = "ddp_spawn",
) -> tuple[np.ndarray, dict[str, np.ndarray]] | tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings (N, D) float32, L2-normalised, and {task: probs (N, C)} in dataset order.

    Runs `predict_arrays` (eval mode, inference mode, a progress bar when `progress`; None: on a
    terminal only). With `return_targets`, also returns {"index": positions (N,),
    "targets": {task: labels}} collected from the batches."""
    arrays = predict_arrays(module, dataloader, progress=progress, devices=devices, strategy=strategy)
    emb = arrays["embeddings"].astype(np.float32, copy=False)
    probs = {t.name: arrays[f"probs:{t.name}"] for t in module.tasks}
    if not return_targets:
        return emb, probs
    extra = {"index": arrays["index"].astype(np.int64),
             "targets": {t.name: arrays[f"targets:{t.name}"] for t in module.tasks}}
    return emb, probs, extra
