"""Opening an evaluation directory together with the checkpoint that built it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fashionlab.errors import ConfigError, DataNotFoundError
from fashionlab.retrieval.catalogue import Catalogue
from fashionlab.retrieval.manifest import MANIFEST, read_manifest
from fashionlab.tasks import TaskSpec

if TYPE_CHECKING:  # the model stack loads only where a command needs a model (not for --random)
    from fashionlab.recommend.predict import Predictor


def manifest_checkpoint(eval_dir: str | Path) -> Path:
    """The checkpoint an evaluation directory was built from, as its manifest names it."""
    recorded = Path(read_manifest(eval_dir)["checkpoint"])
    for candidate in (recorded, Path(eval_dir) / recorded):
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"checkpoint {recorded} named by {Path(eval_dir) / 'manifest.json'} does not exist; pass --ckpt"
    )


def find_index(folder: str | Path) -> tuple[Path, list[Path]]:
    """The evaluation directory `folder` names: itself when it holds a manifest, else, for a
    training run folder, the newest evaluation (by its manifest's time) in its `eval/`; also
    returns every evaluation found there (empty when `folder` is one itself)."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file() or not (folder / "eval").is_dir():
        return folder, []
    found = sorted((p.parent for p in (folder / "eval").glob(f"*/{MANIFEST}")),
                   key=lambda p: ((p / MANIFEST).stat().st_mtime, p.name))
    if not found:
        raise DataNotFoundError(f"{folder} holds no evaluation in {folder / 'eval'}: create one with "
                                f"`python evaluate.py ckpt_path={folder / 'checkpoints' / 'best.ckpt'}`")
    return found[-1], found


def open_index(
    eval_dir: str | Path, ckpt: str | Path | None = None, batch_size: int = 64
) -> tuple[Catalogue, Predictor]:
    """The catalogue and a predictor for query images. The checkpoint (default: the manifest's) must
    be the one the index was built from, and the index built from its training data (when the
    checkpoint records it), else ManifestMismatchError."""
    from fashionlab.recommend.predict import Predictor

    predictor = Predictor.from_checkpoint(ckpt or manifest_checkpoint(eval_dir), batch_size=batch_size)
    identity = predictor.checkpoint.data_identity or {}
    catalogue = Catalogue.load(eval_dir, checkpoint_sha256=predictor.sha256,
                               data_fingerprint=identity.get("fingerprint"))
    return catalogue, predictor


def item_labels(catalogue: Catalogue, item_id: int) -> dict[str, object]:
    """Predicted labels of a catalogue item ({task: name or list of names})."""
    row = catalogue.gallery.iloc[int(item_id)]
    return {t.name: row[f"pred_{t.name}"] for t in catalogue.tasks}


def item_source(row: pd.Series) -> str:
    """The item's file, or `split[index]` for in-memory datasets."""
    path = row.get("path")
    if isinstance(path, str) and path:
        return path
    return f"{row['split']}[{int(row['index'])}]"


def check_k(k: int, available: int, what: str = "the catalogue") -> None:
    if k < 1:
        raise ConfigError(f"-k must be at least 1 (got {k})")
    if k > available:
        raise ConfigError(f"-k {k} is larger than {what} ({available} items)")


def label_text(labels: dict[str, object]) -> str:
    return " ".join(
        f"{task}={'|'.join(v) if isinstance(v, list | tuple | np.ndarray) else v}"
        for task, v in labels.items()
    )


def results_table(
    catalogue: Catalogue, ids: np.ndarray, scores: np.ndarray, tasks: list[TaskSpec] | None = None
) -> pd.DataFrame:
    """rank, id, path, score and each task's predicted label of the given catalogue items."""
    tasks = tasks or catalogue.tasks
    rows = []
    for rank, (item_id, score) in enumerate(zip(ids, scores, strict=True), start=1):
        row = catalogue.gallery.iloc[int(item_id)]
        entry = {"rank": rank, "id": int(item_id), "path": item_source(row), "score": round(float(score), 4)}
        for t in tasks:
            value = row[f"pred_{t.name}"]
            entry[t.name] = "|".join(value) if isinstance(value, list | tuple | np.ndarray) else value
        rows.append(entry)
    return pd.DataFrame(rows)
