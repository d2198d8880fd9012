"""In-memory synthetic images for throughput measurements: already normalised float tensors, so a
data loader only gathers them into batches (the loader is not what is measured).

The same arrays (`synthetic_arrays`, fixed by a seed) feed this project's train.py (`data=synthetic`)
and the reference loop it is compared with (benchmarks/gpu_speed.py: timm's own train.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fashionlab.data.datamodule import SPLITS, MultiTaskDataModule
from fashionlab.errors import ConfigError

TASK = "label"


def synthetic_arrays(count: int, image_size: int, num_classes: int,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct images (count, 3, size, size) float32 (standard normal: already
    'normalised') and their labels (count,) int64, a function of the arguments only."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, 3, image_size, image_size), dtype=np.float32)
    return images, rng.integers(0, num_classes, size=count, dtype=np.int64)


class SyntheticDataset(Dataset):
    """`length` items cycling over the distinct `images`: {"image", "targets", "index"} like the
    project's other datasets, or (image, label) pairs with `pairs=True` (timm's train.py)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, length: int, pairs: bool = False) -> None:
        self.images = images
        self.labels = labels
        self.length = int(length)
        self.pairs = pairs
        self.targets = {TASK: labels[np.arange(self.length) % len(labels)]}
        self.transform: Any = None  # set by timm's create_loader; the items are final already

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        image = torch.from_numpy(self.images[index % len(self.images)])
        label = int(self.labels[index % len(self.labels)])
        if self.pairs:
            return image, label
        return {"image": image, "targets": {TASK: torch.tensor(label)}, "index": index}


class SyntheticDataModule(MultiTaskDataModule):
    """`distinct` random images at `image_size`, `num_classes` classes of one task (`label`);
    the train split has `train_length` items per epoch, val and test `eval_length` each.
    No transforms: the images are the model's input as they are."""

    def __init__(self, num_classes: int = 1000, distinct: int = 512, train_length: int = 25600,
                 eval_length: int = 512, **kwargs: Any) -> None:
        if int(num_classes) < 2 or int(distinct) < 1:
            raise ConfigError(f"data.num_classes={num_classes} and data.distinct={distinct}: need at least "
                              f"2 classes and 1 image")
        kwargs.pop("tasks", None)  # the config names the task; its classes come from num_classes
        kwargs["tasks"] = {TASK: {"kind": "multiclass",
                                  "classes": [f"class_{i}" for i in range(int(num_classes))]}}
        super().__init__(**kwargs)
        self.num_classes, self.distinct = int(num_classes), int(distinct)
        self.lengths = {"train": int(train_length), "val": int(eval_length), "test": int(eval_length)}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        size = self.preprocess.input_size if self.preprocess else 224
        images, labels = synthetic_arrays(self.distinct, size, self.num_classes, self.seed)
        self.splits = {split: SyntheticDataset(images, labels, self.lengths[split]) for split in SPLITS}

    def fingerprint_items(self, digest: Any, dataset: Dataset, legacy: bool = False) -> None:
        """The arrays are a function of their shape and seed: hash those, not 600 MB of pixels."""
        digest.update(f"{dataset.images.shape}:{self.seed}:{len(dataset)}".encode())
