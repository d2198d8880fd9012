"""A trained checkpoint applied to decoded images: per-task probabilities, hierarchy-constrained
labels and the embeddings of the evaluation index, from one forward pass per image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

from fashionlab.data.array_dataset import ArrayImageDataset
from fashionlab.data.preprocess import eval_transform_from_checkpoint
from fashionlab.errors import DataNotFoundError
from fashionlab.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from fashionlab.inference.embed import extract
from fashionlab.inference.labels import label_names, predicted_indices
from fashionlab.models.hierarchy import full_label
from fashionlab.tasks import TaskSpec, task_by_name


@dataclass
class Predictions:
    """Model outputs for N images: L2-normalised embeddings, per-task probabilities and labels
    (hierarchy-constrained; multilabel tasks: the classes with probability >= 0.5)."""

    tasks: list[TaskSpec]
    embeddings: np.ndarray
    probs: dict[str, np.ndarray]
    labels: dict[str, list]

    def __len__(self) -> int:
        return len(self.embeddings)

    def confidence(self, task: str, i: int) -> float | list[float]:
        spec = next(t for t in self.tasks if t.name == task)
        label = self.labels[task][i]
        if spec.kind == "multilabel":
            return [float(self.probs[task][i, spec.class_index(c)]) for c in label]
        return float(self.probs[task][i, spec.class_index(label)])

    def full_label(self, i: int) -> str | None:
        """`parent-child` label over the task hierarchy ("tops-Shirt"); None without hierarchy."""
        related = {t.parent for t in self.tasks if t.parent} | {t.name for t in self.tasks if t.parent}
        chain = [t for t in self.tasks if t.name in related and t.kind == "multiclass"]
        if not chain:
            return None
        return full_label(chain, {t.name: self.labels[t.name][i] for t in chain})


class Predictor:
    """A loaded checkpoint with its eval transform (data.preprocess's record; the stored
    data.transforms.eval of an older checkpoint), applied to decoded RGB images."""

    def __init__(self, checkpoint: LoadedCheckpoint, batch_size: int = 64) -> None:
        self.checkpoint = checkpoint
        self.tasks: list[TaskSpec] = list(checkpoint.tasks)
        self.transform = eval_transform_from_checkpoint(checkpoint)
        self.grayscale = self.transform.grayscale
        self.batch_size = int(batch_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, batch_size: int = 64) -> Predictor:
        return cls(load_checkpoint(path), batch_size=batch_size)

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def decode_min_side(self) -> int | None:
        """`min_side` to decode image files with for this model (load_rgb): its preprocessing
        record's decode_min_side; None (full decoding) for a checkpoint without a record."""
        record = self.transform.record
        return record.decode_min_side if record is not None else None

    def task(self, name: str) -> TaskSpec:
        return task_by_name(self.tasks, name)

    def model_input(self, rgb: np.ndarray) -> np.ndarray:
        """An HxWx3 uint8 image in the layout the training data had (HxW for grayscale data)."""
        if self.grayscale:
            return np.asarray(Image.fromarray(rgb).convert("L"))
        return rgb

    def predict(self, images: Sequence[np.ndarray]) -> Predictions:
        """Predict decoded RGB images (HxWx3 uint8, any size)."""
        if not len(images):
            raise DataNotFoundError("no images to predict")
        data = ArrayImageDataset([self.model_input(im) for im in images], {}, self.transform)
        loader = DataLoader(data, batch_size=self.batch_size, shuffle=False)
        embeddings, probs = extract(self.checkpoint.module, loader, progress=False)
        probs = {name: np.asarray(p, dtype=np.float32) for name, p in probs.items()}
        chosen = predicted_indices(self.tasks, probs)
        labels = {t.name: label_names(t, chosen[t.name]) for t in self.tasks}
        return Predictions(self.tasks, np.asarray(embeddings, dtype=np.float32), probs, labels)
