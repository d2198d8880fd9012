"""A searchable catalogue: an evaluation directory's index, embeddings and gallery table.

A file that exists but cannot be read (empty, truncated, overwritten) is a DataFormatError naming
it, so that the commands report one line instead of a faiss, NumPy or Arrow traceback."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from fashionlab.config_safety import DATA, check_targets, safe_instantiate
from fashionlab.data.images import load_rgb
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError, ManifestMismatchError
from fashionlab.retrieval.index import load_index
from fashionlab.retrieval.index import search as index_search
from fashionlab.retrieval.manifest import check_manifest, read_manifest
from fashionlab.tasks import TaskSpec, tasks_from_config

INDEX_FILE = "index.faiss"
EMBEDDINGS_FILE = "embeddings.npy"
GALLERY_FILE = "gallery.parquet"
T = TypeVar("T")


def read_catalogue_file(path: Path, reader: Callable[[Path], T]) -> T:
    """`reader(path)`; the readers' own errors on a damaged file become a DataFormatError naming it."""
    try:
        return reader(path)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise DataFormatError(
            f"{path}: cannot be read ({type(exc).__name__}: {detail}); the file is damaged or "
            f"incomplete — rebuild the evaluation directory with evaluate.py") from None


class Catalogue:
    """Gallery items of one evaluation directory; faiss id i = embeddings row i = gallery row i."""

    def __init__(self, folder: Path, manifest: dict[str, Any], index: Any, embeddings: np.ndarray,
                 gallery: pd.DataFrame) -> None:
        self.folder = folder
        self.manifest = manifest
        self.index = index
        self.embeddings = embeddings
        self.gallery = gallery
        self.tasks: list[TaskSpec] = tasks_from_config(manifest["tasks"],
                                                       key=f"{folder}/manifest.json: tasks")

    @classmethod
    def load(cls, eval_dir: str | Path, checkpoint_sha256: str | None = None,
             data_fingerprint: str | None = None) -> Catalogue:
        """Open an evaluation directory; a given checkpoint hash (or data fingerprint) must match
        the manifest, else ManifestMismatchError."""
        folder = Path(eval_dir)
        manifest = read_manifest(folder)
        check_manifest(manifest, folder / "manifest.json", checkpoint_sha256, data_fingerprint)
        check_targets(manifest.get("data") or {}, str(folder / "manifest.json"), DATA, key="data")
        for name in (INDEX_FILE, EMBEDDINGS_FILE, GALLERY_FILE):
            if not (folder / name).is_file():
                raise DataNotFoundError(f"{folder / name} not found (evaluation directory incomplete)")
        embeddings = read_catalogue_file(folder / EMBEDDINGS_FILE, np.load)
        gallery = read_catalogue_file(folder / GALLERY_FILE, pd.read_parquet)
        index = read_catalogue_file(folder / INDEX_FILE, lambda p: load_index(p, manifest["index"]))
        sizes = {"manifest num_items": manifest["num_items"], EMBEDDINGS_FILE: len(embeddings),
                 GALLERY_FILE: len(gallery), INDEX_FILE: index.ntotal}
        if len(set(sizes.values())) != 1 or embeddings.shape[1] != manifest["embedding_dim"]:
            raise ManifestMismatchError(
                f"{folder}: files disagree on the catalogue size or dimension: "
                + ", ".join(f"{k}={v}" for k, v in sizes.items())
                + f", embedding_dim={manifest['embedding_dim']} vs {embeddings.shape[1]}")
        return cls(folder, manifest, index, embeddings, gallery)

    def __len__(self) -> int:
        return len(self.gallery)

    def search(self, queries: np.ndarray, k: int,
               allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores (Q, k), ids (Q, k)) for L2-normalised queries (Q, D); `allowed_ids` restricts
        the candidates (ids -1 pad rows with fewer than k allowed items found)."""
        available = len(self) if allowed_ids is None else len(np.unique(allowed_ids))
        if not 1 <= int(k) <= len(self):
            raise ConfigError(f"k={k}: the catalogue {self.folder} holds {len(self)} items; "
                             f"k must be between 1 and {len(self)}")
        if allowed_ids is not None and available == 0:
            raise ConfigError("allowed_ids is empty: no catalogue item to search")
        return index_search(self.index, self.manifest["index"], queries, int(k), allowed_ids)

    @cached_property
    def _datamodule(self) -> Any:
        data_cfg = self.manifest.get("data")
        if not data_cfg:
            raise ConfigError(f"{self.folder}/manifest.json has no 'data' config to rebuild images from")
        if isinstance(data_cfg, dict) and isinstance(data_cfg.get("cache"), dict):
            # a cache location read from a shared folder is never followed: images from the files
            data_cfg = {**data_cfg, "cache": {**data_cfg["cache"], "dir": None, "storage_options": {}}}
        datamodule = safe_instantiate(data_cfg, str(self.folder / "manifest.json"), DATA, key="data",
                                      _recursive_=False)
        datamodule.setup()
        return datamodule

    def image(self, item_id: int) -> np.ndarray:
        """Gallery item `item_id` as HxWx3 uint8: read from its file, or from the training data."""
        if not 0 <= int(item_id) < len(self):
            raise IndexError(f"item id {item_id} outside 0..{len(self) - 1} of {self.folder}")
        row = self.gallery.iloc[int(item_id)]
        path = row.get("path")
        if isinstance(path, str) and path:
            return load_rgb(self._resolve(path))
        return self._datamodule.splits[row["split"]].raw_image(int(row["index"]))

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        root = (self.manifest.get("data") or {}).get("root")
        return p if p.is_absolute() or not root else Path(root) / p

