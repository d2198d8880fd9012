"""A torch Dataset over images already decoded into one in-memory array."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def label_tensor(value: Any) -> torch.Tensor:
    """One item's label of one task: a long class index, or a float multi-hot row."""
    return (torch.as_tensor(value, dtype=torch.float32) if np.ndim(value)
            else torch.as_tensor(value, dtype=torch.long))


def target_tensors(targets: dict[str, np.ndarray], index: int) -> dict[str, torch.Tensor]:
    """Item `index` of each task's labels (see `label_tensor`)."""
    return {task: label_tensor(values[index]) for task, values in targets.items()}


class ArrayImageDataset(Dataset):
    """Images (N, H, W[, C]) uint8, or a sequence of HxW[xC] images of any sizes, plus per-task
    integer or multi-hot targets (none: `{}`, e.g. for prediction).

    Items are dicts: `image` (C, H, W float tensor after `transform`), `targets`
    ({task: tensor}) and `index` (position in this split, for tracing predictions back).
    `ids` (default: the positions) name each image in its source, e.g. its index in a file.
    """

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        targets: dict[str, np.ndarray],
        transform: Callable[..., dict] | None = None,
        ids: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        for task, values in targets.items():
            if len(values) != len(images):
                raise ValueError(f"task {task!r} has {len(values)} labels for {len(images)} images")
        if ids is not None and len(ids) != len(images):
            raise ValueError(f"{len(ids)} ids for {len(images)} images")
        self.images = images
        self.ids = [int(i) for i in ids] if ids is not None else list(range(len(images)))
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        else:
            image = torch.from_numpy(np.ascontiguousarray(image))
        return {"image": image, "targets": target_tensors(self.targets, index), "index": index}

    def raw_image(self, index: int) -> np.ndarray:
        """Image `index` as stored, before transforms, as HxWx3 uint8 RGB (grey repeated)."""
        image = np.asarray(self.images[index])
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        return np.ascontiguousarray(image[..., :3], dtype=np.uint8)

    def item_info(self, index: int) -> dict:
        """Where item `index` comes from: in-memory arrays have no file, so `path` is None."""
        return {"id": self.ids[index], "path": None, "index": int(index)}
