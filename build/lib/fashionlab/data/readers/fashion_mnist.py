"""Fashion-MNIST in its published form: four IDX gzip files, 60k train and 10k test images."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab.data.datamodule import MultiTaskDataModule
from fashionlab.data.readers.download import download_file
from fashionlab.data.readers.idx import read_idx
from fashionlab.data.splits import stratified_split
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
APT_PACKAGE = "dataset-fashion-mnist"


def _has_all_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in FILES.values() for name in pair)


def locate_fashion_mnist(
    root: str | Path | None,
    system_dirs: Sequence[str | Path] = (),
    download: bool = True,
    mirrors: Sequence[str] = (),
    md5: Mapping[str, str] | None = None,
) -> Path:
    """Folder holding the four Fashion-MNIST files: `root`, a system folder, or a fresh download."""
    candidates = [Path(root)] if root else []
    candidates += [Path(d) for d in system_dirs]
    for folder in candidates:
        if _has_all_files(folder):
            return folder
    looked = ", ".join(str(c) for c in candidates) or "(no folders configured)"
    if download and root and mirrors:
        try:
            for pair in FILES.values():
                for name in pair:
                    if not (Path(root) / name).is_file():
                        download_file(name, list(mirrors), Path(root), (md5 or {}).get(name))
            return Path(root)
        except DataNotFoundError as exc:
            reason = f"Download failed: {exc}"
    else:
        reason = "Download is disabled (data.download=false)."
    raise DataNotFoundError(
        f"Fashion-MNIST files not found in {looked}. {reason}\n"
        f"Get the data either way:\n"
        f"  1. Debian/Ubuntu: sudo apt-get install {APT_PACKAGE}  "
        f"(installs into /usr/share/datasets/fashion-mnist)\n"
        f"  2. Download the four official files ({', '.join(n for p in FILES.values() for n in p)})"
        f" from {mirrors[0] if mirrors else 'the Fashion-MNIST GitHub repository'} into a folder"
        f" and pass data.root=<folder> (with network access, data.download=true does this)."
    )


def read_fashion_mnist_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the official `train` or `test` split."""
    image_file, label_file = (folder / name for name in FILES[split])
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(f"{image_file}: expected uint8 images of shape (N, H, W), "
                              f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFormatError(f"{label_file}: {labels.shape[0]} labels for {len(images)} images "
                              f"in {image_file.name}")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataFormatError(f"{label_file}: label {int(labels.max())} outside 0..9")
    return images, labels.astype(np.int64)


class FashionMNISTDataModule(MultiTaskDataModule):
    """Fashion-MNIST with the `article` task (10 classes) and any parent tasks derived from it.

    The official train split is divided into train/val (stratified, seeded); the official
    test split is the test set.
    """

    def __init__(
        self,
        root: str | None,
        system_dirs: Sequence[str] = (),
        download: bool = True,
        mirrors: Sequence[str] = (),
        md5: Mapping[str, str] | None = None,
        val_size: int | float = 6000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.system_dirs = list(system_dirs)
        self.download = download
        self.mirrors = list(mirrors)
        self.md5 = dict(md5 or {})
        self.val_size = val_size
        self.folder: Path | None = None

    def prepare_data(self) -> None:
        locate_fashion_mnist(self.root, self.system_dirs, self.download, self.mirrors, self.md5)

    def validate(self) -> None:
        """Check the task definitions against the data (before any file is read)."""
        article = next((t for t in self.tasks if t.name == "article"), None)
        if article is None or article.classes != CLASSES:
            raise ConfigError(
                "data.tasks.article.classes must list the 10 Fashion-MNIST classes in label "
                f"order: {', '.join(CLASSES)}"
            )

    def description(self) -> str:
        return "Fashion-MNIST"

    def official_split(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Images and per-task labels of the official `train` or `test` split."""
        images, labels = read_fashion_mnist_split(self.folder, split)
        return images, {"article": labels}

    def load_splits(self) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
        self.validate()
        self.folder = locate_fashion_mnist(
            self.root, self.system_dirs, self.download, self.mirrors, self.md5
        )
        log.info("%s from %s", self.description(), self.folder)
        images, targets = self.official_split("train")
        keep, held = stratified_split(targets["article"], self.val_size, self.seed)
        test_images, test_targets = self.official_split("test")
        self.source_ids = {"train": keep, "val": held, "test": np.arange(len(test_images))}
        return {
            "train": (images[keep], {k: v[keep] for k, v in targets.items()}),
            "val": (images[held], {k: v[held] for k, v in targets.items()}),
            "test": (test_images, test_targets),
        }
