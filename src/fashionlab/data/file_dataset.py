"""A torch Dataset over image files, decoded on access with `load_rgb` (at reduced size when
given a `min_side`, see fashionlab.data.images)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fashionlab.data.array_dataset import target_tensors
from fashionlab.data.images import load_rgb, load_rgb_region


class FileImageDataset(Dataset):
    """Image files plus per-task integer (multiclass) or multi-hot (multilabel) targets.

    `paths` are absolute; `rel_paths` (relative to the data root, for reports and fingerprints)
    and `ids` (stable item ids) are kept alongside. Items are dicts like ArrayImageDataset's:
    `image` (after `transform`), `targets` ({task: tensor}) and `index`. A file that fails to
    decode raises BadImageError naming it.
    """

    def __init__(
        self,
        paths: Sequence[str],
        targets: dict[str, np.ndarray],
        transform: Callable[..., dict] | None = None,
        ids: Sequence[object] | None = None,
        rel_paths: Sequence[str] | None = None,
        boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
        min_side: int | None = None,
    ) -> None:
        """`boxes`: per image, the region (x_1, y_1, x_2, y_2) that `raw_image` returns (clipped
        to the image; None: the whole image). `min_side`: JPEGs are decoded at the smallest DCT
        scale whose shorter side (of the box, if any) is still >= min_side (the preprocessing
        record's `decode_min_side`; None: in full)."""
        for task, values in targets.items():
            if len(values) != len(paths):
                raise ValueError(f"task {task!r} has {len(values)} labels for {len(paths)} images")
        self.paths = [str(p) for p in paths]
        self.rel_paths = [str(p) for p in rel_paths] if rel_paths is not None else list(self.paths)
        self.ids = list(ids) if ids is not None else list(range(len(self.paths)))
        self.targets = targets
        self.transform = transform
        self.min_side = None if min_side is None else int(min_side)
        self.boxes = None if boxes is None else [None if b is None else tuple(int(v) for v in b)
                                                 for b in boxes]
        #: {label: integer code per image} deciding relevance in retrieval (see ImageTableDataModule).
        self.retrieval_targets: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def raw_image(self, index: int) -> np.ndarray:
        """The decoded file (cropped to its box, if any), HxWx3 uint8 RGB, before any transform
        (at reduced size with `min_side`: its box scaled alike)."""
        box = self.boxes[index] if self.boxes is not None else None
        if box is None:
            image = load_rgb(self.paths[index], min_side=self.min_side)
        else:
            image, box = load_rgb_region(self.paths[index], box, min_side=self.min_side)
            x1, y1, x2, y2 = box
            height, width = image.shape[:2]
            x1, x2 = min(x1, width - 1), min(max(x2, x1 + 1), width)
            y1, y2 = min(y1, height - 1), min(max(y2, y1 + 1), height)
            image = np.ascontiguousarray(image[y1:y2, x1:x2])
        return image

    def item_info(self, index: int) -> dict:
        return {"id": self.ids[index], "path": self.paths[index], "index": index}

    def __getitem__(self, index: int) -> dict:
        image = self.raw_image(index)
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        else:
            image = torch.from_numpy(image)
        return {"image": image, "targets": target_tensors(self.targets, index), "index": index}


def relative_to(path: str | Path, root: str | Path) -> str:
    """`path` relative to `root` when inside it (POSIX separators), else the absolute path."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
