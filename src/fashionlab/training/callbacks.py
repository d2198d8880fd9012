"""Training callbacks: the transfer-learning freeze schedule and the state an exact resume needs."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BaseFinetuning, Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import CombinedLoader
from torch import nn
from torch.utils.data import DataLoader, get_worker_info

from fashionlab.training.schedulers import plan_steps

log = logging.getLogger(__name__)


class FreezeThenUnfreeze(BaseFinetuning):
    """Train only the heads for `freeze_epochs` epochs' worth of optimizer steps, then the whole
    network (the step from `schedulers.plan_steps`, as the backbone's learning-rate schedule, so
    a run bounded by trainer.max_steps unfreezes it too).

    Lightning's BaseFinetuning freezes the backbone before training (`freeze_before_training`)
    and makes it trainable again (`make_trainable`); frozen BatchNorm layers also stop updating
    their statistics (and run in eval mode) unless `train_bn` is set. The backbone's parameters
    stay in the optimizer (with their own, lower learning rate, 0 until the unfreeze step) from
    the start, rather than being added by `unfreeze_and_add_param_group`, so that the per-group
    step schedule and an exact resume see one fixed set of groups. The state follows
    `trainer.global_step`, so a resumed run lands in the right phase.
    """

    def __init__(self, freeze_epochs: int = 0, train_bn: bool = False) -> None:
        super().__init__()
        self.freeze_epochs = int(freeze_epochs)
        self.train_bn = train_bn
        self.unfreeze_step = 0
        self._frozen = False

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        if self.freeze_epochs > 0:
            self._set_frozen(pl_module.net.backbone, True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.unfreeze_step = plan_steps(trainer, self.freeze_epochs).unfreeze

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Any) -> None:
        """At each epoch start (BaseFinetuning's hook); also puts frozen BatchNorm layers back in
        eval mode after Lightning set the module to train mode."""
        self._apply(pl_module.trainer.global_step, pl_module, force=True)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._apply(trainer.global_step, pl_module)

    def _apply(self, step: int, pl_module: L.LightningModule, force: bool = False) -> None:
        frozen = step < self.unfreeze_step
        if frozen != self._frozen or force:
            if frozen != self._frozen:
                log.info("step %d: backbone %s", step, "frozen" if frozen else "unfrozen")
            self._set_frozen(pl_module.net.backbone, frozen)

    def _set_frozen(self, backbone: nn.Module, frozen: bool) -> None:
        if frozen:
            self.freeze(backbone, train_bn=self.train_bn)
        else:
            self.make_trainable(backbone)
        for module in backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(backbone.training and (not frozen or self.train_bn))
        self._frozen = frozen


# Streams of per-epoch seeds derived from (seed, epoch): one per kind of randomness.
_GLOBAL, _SAMPLER, _LOADER, _AUGMENT = range(4)


def derived_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integer parts (numpy SeedSequence, order-sensitive)."""
    return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0])


def train_loaders(obj: Any) -> list[DataLoader]:
    """The DataLoaders inside a loader, a CombinedLoader or a (nested) list/dict of them."""
    if isinstance(obj, DataLoader):
        return [obj]
    if isinstance(obj, CombinedLoader):
        return train_loaders(obj.flattened)
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, list | tuple):
        return [loader for item in obj for loader in train_loaders(item)]
    return []


def _samplers(loader: DataLoader) -> list[Any]:
    """The loader's samplers that draw from a `generator` (Random/WeightedRandomSampler, also when
    wrapped by a batch sampler or Lightning's DistributedSamplerWrapper)."""
    found, stack = [], [loader.sampler, getattr(loader.batch_sampler, "sampler", None)]
    while stack:
        sampler = stack.pop()
        if sampler is None or any(sampler is s for s in found):
            continue
        if hasattr(sampler, "generator"):
            found.append(sampler)
        stack.append(getattr(getattr(sampler, "dataset", None), "_sampler", None))
    return found


def seed_loaders(loaders: list[DataLoader], seed: int, epoch: int) -> None:
    """Give each loader's samplers and worker-seed draws a generator seeded from (seed, epoch), so
    the epoch's order does not depend on what drew from the global RNG before.

    litdata's StreamingDataLoader (the data cache) shuffles by its own count of passes, which a
    resumed run starts again from 0: it is set to the trainer's epoch (its next pass is epoch + 1),
    unless the loader is replaying a mid-epoch state (`restore`)."""
    for i, loader in enumerate(loaders):
        if hasattr(loader, "current_epoch") and hasattr(loader, "restore") and not loader.restore:
            loader.current_epoch = int(epoch)
        loader.generator = torch.Generator().manual_seed(derived_seed(seed, epoch, _LOADER, i))
        for sampler in _samplers(loader):
            sampler.generator = torch.Generator().manual_seed(
                derived_seed(seed, epoch, _SAMPLER, i))


class EpochSeededTransform:
    """A train pipeline (albumentations Compose) whose random state restarts from the epoch seed.

    The seed lives in shared memory: DataLoader workers, persistent or not, see the value the
    main process sets and reseed their copy (mixed with their worker id) before the first item
    they transform under a new seed, so augmentation is a function of (seed, epoch, worker).
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self._seed = torch.zeros((), dtype=torch.int64).share_memory_()
        self._applied: int | None = None

    def set_epoch_seed(self, seed: int) -> None:
        self._seed.fill_(int(seed))

    def set_random_seed(self, seed: int | None) -> None:
        """albumentations' interface (used by the loader's worker init); the epoch seed still
        applies from the next item on."""
        self.transform.set_random_seed(seed)
        self._applied = None

    def __call__(self, **data: Any) -> Any:
        seed = int(self._seed)
        if seed != self._applied:
            info = get_worker_info()
            self.transform.set_random_seed(derived_seed(seed, info.id if info else 0))
            self._applied = seed
        return self.transform(**data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("transform", "_seed", "_applied"):
            raise AttributeError(name)
        return getattr(self.transform, name)


def _capture_rng() -> dict[str, Any]:
    """torch (CPU, CUDA), numpy and python RNG states as weights_only-loadable values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def _restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and (
            len(state["cuda"]) == torch.cuda.device_count()):
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["gauss"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))


class ResumeState(Callback):
    """Makes a resumed run retrace the uninterrupted one.

    At each train epoch start, every source of randomness restarts from (seed, epoch): the global
    torch (CPU and CUDA), numpy and python RNGs (dropout, ...; mixed with the process rank), the
    train samplers' generators (shuffle, weighted sampling), the loader's worker-seed generator
    and the train augmentation pipeline (see EpochSeededTransform). A run resumed from an
    epoch-end checkpoint therefore replays the next epoch exactly. The checkpoint also carries the
    RNG, sampler and loader states (for checkpoints saved mid-epoch) and the W&B run id, so that
    the resumed run logs into the same W&B run.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.wandb_run_id: str | None = None
        self._trainer: L.Trainer | None = None
        self._transform: EpochSeededTransform | None = None
        self._next_epoch = 0
        self._pending: dict[str, Any] | None = None

    def _augment_seed(self, epoch: int) -> int:
        rank = self._trainer.global_rank if self._trainer is not None else 0
        return derived_seed(self.seed, epoch, _AUGMENT, rank)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Wrap the train split's pipeline before any loader (or worker) is created."""
        self._trainer = trainer
        splits = getattr(trainer.datamodule, "splits", None) or {}
        dataset = splits.get("train")
        transform = getattr(dataset, "transform", None)
        if stage == "fit" and hasattr(transform, "set_random_seed"):
            if not isinstance(transform, EpochSeededTransform):
                transform = dataset.transform = EpochSeededTransform(transform)
            self._transform = transform
            transform.set_epoch_seed(self._augment_seed(self._next_epoch))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the samplers' and loaders' generators saved in the checkpoint (mid-epoch)."""
        if self._pending is None:
            return
        loaders = train_loaders(trainer.train_dataloader)
        for loader, saved in zip(loaders, self._pending.get("loaders", []), strict=False):
            if saved.get("loader") is not None:
                loader.generator = torch.Generator()
                loader.generator.set_state(saved["loader"])
            for sampler, state in zip(_samplers(loader), saved.get("samplers", []), strict=False):
                sampler.generator = torch.Generator()
                sampler.generator.set_state(state)
        self._pending = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        seed = derived_seed(self.seed, epoch, _GLOBAL, trainer.global_rank)
        torch.manual_seed(seed)  # CPU and every CUDA device
        np.random.seed(seed)
        random.seed(seed)
        seed_loaders(train_loaders(trainer.train_dataloader), self.seed, epoch)
        if self._transform is not None:
            self._transform.set_epoch_seed(self._augment_seed(epoch))

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        next_epoch, loaders = 0, []
        if trainer is not None:
            progress = trainer.fit_loop.epoch_progress.current
            next_epoch = trainer.current_epoch + int(progress.processed > progress.completed)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger) and logger.version:
                    self.wandb_run_id = str(logger.version)
            for loader in train_loaders(trainer.train_dataloader):
                generator = loader.generator
                loaders.append({
                    "loader": generator.get_state() if generator is not None else None,
                    "samplers": [s.generator.get_state() for s in _samplers(loader)
                                 if s.generator is not None]})
        return {"seed": self.seed, "next_epoch": next_epoch, "wandb_run_id": self.wandb_run_id,
                "rng": _capture_rng(), "loaders": loaders}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if int(state_dict.get("seed", self.seed)) != self.seed:
            log.warning("resuming with seed %d; the checkpoint was trained with seed %s",
                        self.seed, state_dict["seed"])
        self.wandb_run_id = state_dict.get("wandb_run_id")
        self._next_epoch = int(state_dict.get("next_epoch", 0))
        if self._transform is not None:
            self._transform.set_epoch_seed(self._augment_seed(self._next_epoch))
        if state_dict.get("rng"):
            _restore_rng(state_dict["rng"])
        self._pending = state_dict
