"""LightningDataModule shared by all dataset formats: splits, transforms, loaders, fingerprint.

A format subclass either implements `load_splits()` (in-memory arrays, e.g. Fashion-MNIST) or
overrides `build_datasets()` (e.g. file-backed tables, see `image_table.py`); tasks, loaders, class
counts, the optional weighted train sampler, the fingerprint and the data identity (fingerprint
plus the val/test items, kept in checkpoints through `state_dict()`) are shared.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from fashionlab.config_safety import TRANSFORMS, safe_instantiate
from fashionlab.data.array_dataset import ArrayImageDataset
from fashionlab.data.loader_settings import (
    check_pin_memory,
    check_workers,
    resolve_pin_memory,
    resolve_workers,
    trainer_devices,
)
from fashionlab.data.preprocess import Preprocessing, build_eval_transform, legacy_eval_pipeline
from fashionlab.errors import ConfigError
from fashionlab.tasks import TaskSpec, derive_parent_targets, tasks_from_config, tasks_to_config

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: Splits whose items a checkpoint records, so that evaluation can check it sees the same ones.
IDENTITY_SPLITS = ("val", "test")
#: Key of the data identity in the datamodule's state (saved by Lightning in every checkpoint).
DATA_IDENTITY = "data_identity"
#: What a file-backed fingerprint hashes per file; a stored identity without it (checkpoints written
#: before) used each file's size and the SHA-1 of its first and last 4 KiB (`legacy_fingerprint`).
FINGERPRINT_KIND = "content-sha256"


def items_sha256(items: list[Any]) -> str:
    """SHA-256 of a split's item list (ids or relative paths), in order."""
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def stored_identity(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The data identity a checkpoint holds (under its datamodule's class name), or None for
    checkpoints written before it was recorded."""
    for value in checkpoint.values():
        if isinstance(value, Mapping) and isinstance(value.get(DATA_IDENTITY), Mapping):
            return dict(value[DATA_IDENTITY])
    return None


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: seed Python, NumPy and torch (Lightning's scheme) and give the
    albumentations pipeline, which keeps its own random state, a per-worker seed."""
    pl_worker_init_function(worker_id)
    info = torch.utils.data.get_worker_info()
    transform = None
    if info is not None:  # a file/array dataset's `transform`, a cached split's `image_transform`
        transform = getattr(info.dataset, "image_transform", None) or \
            getattr(info.dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(torch.initial_seed() % 2**32)


class MultiTaskDataModule(L.LightningDataModule):
    """Base data module. A format subclass implements `load_splits()` or `build_datasets()`.

    `tasks` are the TaskSpecs the model is built with; `report_dir` (set by the training run to
    its run folder) is where a subclass writes data reports; `main_task` names the task that
    selects checkpoints by default (`training.monitor`) and stratifies splits.
    """

    #: True when the resolved tasks depend on the data (e.g. `classes: auto`): `tasks` then
    #: reads the data on first access; otherwise the tasks config is checked at construction.
    tasks_from_data: bool = False
    #: Splits beyond train/val/test that a format provides (e.g. an official retrieval gallery);
    #: they are built, fingerprinted and recorded in the data identity like val/test.
    extra_splits: tuple[str, ...] = ()

    def __init__(
        self,
        tasks: Mapping[str, Any],
        transforms: Mapping[str, Any],
        image_size: int | None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | str = 0,
        seed: int = 0,
        pin_memory: bool | str = False,
        main_task: str | None = None,
        report_dir: str | None = None,
        preferred_image_size: int | None = None,
        preprocess: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        prefetch_factor: int | None = None,
    ) -> None:
        """`evaluation`: evaluate.py's defaults for this data (e.g. its gallery and query splits),
        read by the evaluation from the data config; kept here only as given. `num_workers` and
        `pin_memory` may be `auto` (see data.loader_settings); `prefetch_factor`: batches each
        worker loads ahead (None: torch's default, 2)."""
        super().__init__()
        self.evaluation_defaults = dict(evaluation or {})
        self.tasks_cfg = tasks
        self._tasks: list[TaskSpec] | None = (
            None if self.tasks_from_data else tasks_from_config(tasks))
        self.transforms_cfg = transforms
        # image_size auto (null) is resolved against the backbone by the training run; a data
        # module built on its own falls back to the data's preferred size.
        size = int(image_size if image_size is not None else preferred_image_size)
        #: The preprocessing record the eval pipeline is built from (None: a config written before
        #: it existed, whose `transforms.eval` is used); without one in a current config, a plain
        #: resize to image_size with ImageNet statistics.
        self.preprocess: Preprocessing | None = None
        if preprocess is not None:
            self.preprocess = Preprocessing.from_config(preprocess, default_size=size)
        elif "eval" not in transforms:
            self.preprocess = Preprocessing(input_size=size)
        if self.preprocess is not None and self.preprocess.input_size != size:
            raise ConfigError(f"data.preprocess.input_size={self.preprocess.input_size} differs "
                              f"from data.image_size={size}; set data.image_size only")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers_cfg = check_workers(num_workers)
        self.seed = int(seed)
        self.pin_memory_cfg = check_pin_memory(pin_memory)
        self.prefetch_factor = None if prefetch_factor is None else int(prefetch_factor)
        self.main_task = main_task
        self.report_dir = report_dir
        self.splits: dict[str, Dataset] = {}
        #: {split: each item's index in its source} when `load_splits` knows it (names items).
        self.source_ids: dict[str, np.ndarray] = {}
        self._identity: dict[str, Any] | None = None
        #: The identity read back from a checkpoint by `load_state_dict` (None: none read).
        self.recorded_identity: dict[str, Any] | None = None

    @property
    def tasks(self) -> list[TaskSpec]:
        """The resolved tasks (a subclass may need to read its data to know the classes)."""
        if self._tasks is None:
            self._tasks = self.resolve_tasks()
        return self._tasks

    @tasks.setter
    def tasks(self, value: list[TaskSpec]) -> None:
        """Impose resolved tasks (e.g. a checkpoint's); for tasks from data, set them before
        `setup()` so that labels are read against exactly these classes."""
        self._tasks = list(value)
        if self.tasks_from_data:
            self.tasks_cfg = tasks_to_config(self._tasks)

    def resolve_tasks(self) -> list[TaskSpec]:
        """TaskSpecs from the `tasks` config (override to take classes from the data)."""
        return tasks_from_config(self.tasks_cfg)

    def load_splits(self) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Return {split: (images, {task: labels})} for train, val and test; optionally set
        `self.source_ids` ({split: each image's index in its source file}) to name the items."""
        raise NotImplementedError(f"{type(self).__name__} implements neither load_splits() "
                                  f"nor build_datasets()")

    def build_datasets(self, train_tf: Any, eval_tf: Any) -> dict[str, Dataset]:
        """{split: dataset} for train, val and test; each dataset has `targets` ({task: array})."""
        splits: dict[str, Dataset] = {}
        for split, (images, targets) in self.load_splits().items():
            targets = derive_parent_targets(self.tasks, targets)
            targets = {t.name: targets[t.name] for t in self.tasks}
            transform = train_tf if split == "train" else eval_tf
            splits[split] = ArrayImageDataset(images, targets, transform,
                                              ids=self.source_ids.get(split))
        return splits

    def eval_transform(self) -> Any:
        """The eval pipeline (val/test, evaluation), built from the preprocessing record."""
        if self.preprocess is None:
            log.warning("data config without data.preprocess (written before it existed): "
                        "using its transforms.eval pipeline")
            return legacy_eval_pipeline(self.transforms_cfg, "data")
        return build_eval_transform(self.preprocess)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        train_tf = safe_instantiate(self.transforms_cfg["train"], "data", [TRANSFORMS],
                                    key="transforms.train")
        self.splits = self.build_datasets(train_tf, self.eval_transform())
        log.info(
            "data: %s",
            ", ".join(f"{name}={len(ds)}" for name, ds in self.splits.items()),
        )

    def train_sampler(self) -> Sampler | None:
        """A sampler for the train loader (None: shuffle)."""
        return None

    def eval_sampler(self, split: str) -> Sampler | None:
        """A sampler for the val/test loaders: under multi-process training, each process takes
        every world_size-th item with no padding (Lightning's DistributedSampler would repeat
        items to even out the processes, and the metrics, synced across processes, would count
        them twice); None on one process."""
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        if 0 < len(self.splits[split]) < trainer.world_size:
            raise ConfigError(f"the {split} split has {len(self.splits[split])} items, fewer than "
                              f"the {trainer.world_size} processes (trainer.devices x num_nodes)")
        return UnrepeatedDistributedSampler(self.splits[split], num_replicas=trainer.world_size,
                                            rank=trainer.global_rank, shuffle=False)

    @property
    def num_workers(self) -> int:
        """Loader workers per process (`auto`: the cores per device of the trainer's node)."""
        return resolve_workers(self.num_workers_cfg, trainer_devices(self._trainer_or_none()))

    @property
    def pin_memory(self) -> bool:
        return resolve_pin_memory(self.pin_memory_cfg, self._trainer_or_none())

    def _trainer_or_none(self) -> Any:
        return getattr(self, "trainer", None)

    def loader_options(self) -> dict[str, Any]:
        """Workers (persistent, seeded), pinning and prefetching, shared by every loader."""
        workers = self.num_workers
        options: dict[str, Any] = dict(num_workers=workers, persistent_workers=workers > 0,
                                       worker_init_fn=seed_worker if workers > 0 else None,
                                       pin_memory=self.pin_memory)
        if workers > 0 and self.prefetch_factor is not None:
            options["prefetch_factor"] = self.prefetch_factor
        return options

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        sampler = self.train_sampler() if split == "train" else self.eval_sampler(split)
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle and len(self.splits[split]) > self.batch_size,
            **self.loader_options(),
        )

    def inference_loader(self, split: str, batch_size: int | None = None) -> DataLoader:
        """A loader over `split` with the eval transform (no augmentation), for evaluation and
        embedding extraction (items carry their `index`, so order does not matter)."""
        self.setup()
        if split not in self.splits:
            raise ConfigError(f"split {split!r} not in the data ({', '.join(self.splits)})")
        dataset = copy.copy(self.splits[split])
        dataset.transform = self.eval_transform()
        options = self.loader_options()
        options["persistent_workers"] = False
        return DataLoader(dataset, batch_size=int(batch_size or self.eval_batch_size), shuffle=False,
                          **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def class_counts(self, split: str = "train") -> dict[str, np.ndarray]:
        """Per-task class counts (for multilabel tasks: positives per label)."""
        self.setup()
        counts = {}
        for task in self.tasks:
            labels = self.splits[split].targets[task.name]
            if task.kind == "multilabel":
                labels = np.asarray(labels)
                counts[task.name] = np.where(labels > 0, 1, 0).sum(axis=0)
            else:
                valid = labels[labels >= 0]
                counts[task.name] = np.bincount(valid, minlength=task.num_classes)
        return counts

    def fingerprint(self) -> str:
        """SHA-256 over every split's images, labels and task definitions."""
        self.setup()
        return self.fingerprint_of(self.splits)

    def legacy_fingerprint(self) -> str:
        """The fingerprint as checkpoints written before FINGERPRINT_KIND computed it."""
        self.setup()
        return self.fingerprint_of(self.splits, legacy=True)

    def matches_recorded(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """This data's identity, comparable with `recorded` (a stored one): for an identity
        written before FINGERPRINT_KIND, its fingerprint is the legacy one (see `legacy_fingerprint`)."""
        identity = self.data_identity()
        if recorded.get("fingerprint_kind") == identity.get("fingerprint_kind"):
            return identity
        return {**identity, "fingerprint": self.legacy_fingerprint(), "fingerprint_kind": None}

    def fingerprint_of(self, splits: Mapping[str, Dataset], legacy: bool = False) -> str:
        """The fingerprint of the datasets `splits` (see `fingerprint`; `legacy`: see
        `legacy_fingerprint`)."""
        digest = hashlib.sha256()
        digest.update(json.dumps([t.__dict__ for t in self.tasks], sort_keys=True,
                                 default=dict).encode())
        for split in (*SPLITS, *self.extra_splits):
            ds = splits[split]
            digest.update(split.encode())
            self.fingerprint_items(digest, ds, legacy)
            for task in self.tasks:
                digest.update(np.ascontiguousarray(ds.targets[task.name]).tobytes())
        return digest.hexdigest()

    def fingerprint_items(self, digest: Any, dataset: Dataset, legacy: bool = False) -> None:
        """Feed what identifies a split's images into `digest` (here: the pixel arrays, the same
        for `legacy`)."""
        digest.update(np.ascontiguousarray(dataset.images).tobytes())

    def split_items(self, split: str) -> list[Any]:
        """What names the items of `split` across runs (here: the datasets' source ids)."""
        dataset = self.splits[split]
        return [int(i) for i in getattr(dataset, "ids", range(len(dataset)))]

    def data_identity(self) -> dict[str, Any]:
        """The fingerprint plus, per val/test split, its item list and that list's hash (cached)."""
        if self._identity is None:
            self.setup()
            splits = {}
            for split in (*IDENTITY_SPLITS, *self.extra_splits):
                items = self.split_items(split)
                splits[split] = {"count": len(items), "sha256": items_sha256(items), "items": items}
            self._identity = {"fingerprint": self.fingerprint(), "fingerprint_kind": FINGERPRINT_KIND,
                              "splits": splits}
        return self._identity

    def state_dict(self) -> dict[str, Any]:
        """Saved by Lightning in each checkpoint: the identity of the data trained on."""
        return {DATA_IDENTITY: self.data_identity()} if self.splits else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the checkpoint's data identity; warn when the data in use differs from it."""
        self.recorded_identity = state_dict.get(DATA_IDENTITY)
        if self.splits and self.recorded_identity:
            now = self.matches_recorded(self.recorded_identity)["fingerprint"]
            if self.recorded_identity.get("fingerprint") != now:
                log.warning("the data (fingerprint %s) differs from the data the checkpoint was "
                            "trained on (%s)", now[:16], str(self.recorded_identity.get("fingerprint"))[:16])

    def data_stats(self) -> dict[str, Any]:
        """Extra numbers for metrics.json (split sizes; subclasses add e.g. skipped files)."""
        self.setup()
        return {f"data_num_{split}": len(ds) for split, ds in self.splits.items()}
