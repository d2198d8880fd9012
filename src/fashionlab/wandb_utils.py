"""W&B helpers shared by training, evaluation and sweeps: keeping a run's staged files in its
folder, closing the process's run, confusion charts, declaring an artifact a run's input (online
and offline), image thumbnails."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Longest side of the images put into W&B tables (bounded file size on the run page).
THUMBNAIL_PX = 96
#: wandb stages the files of logged tables and images (and very large artifact manifests) under
#: `$WANDB_DATA_DIR/artifacts/staging`, read when the environment variable is (at each log call).
DATA_DIR_ENV = "WANDB_DATA_DIR"
#: Where a run stages them instead: inside its own folder, next to its offline-run-* folder.
STAGING_SUBDIR = Path("wandb") / "data"
_UNSET = object()
_outer_data_dir: object = _UNSET  # WANDB_DATA_DIR as it was before the first stage_in_folder


def stage_in_folder(folder: str | Path) -> Path:
    """Make W&B stage the run's table and image files inside `folder` (`<folder>/wandb/data`, as
    WANDB_DATA_DIR) until `finish_wandb`: the folder then holds every file its offline run names,
    so that `wandb sync` of the folder copied to another machine (at the same path) finds them."""
    global _outer_data_dir
    if _outer_data_dir is _UNSET:
        _outer_data_dir = os.environ.get(DATA_DIR_ENV)
    data_dir = (Path(folder) / STAGING_SUBDIR).absolute()
    os.environ[DATA_DIR_ENV] = str(data_dir)
    return data_dir


def restore_data_dir() -> None:
    """WANDB_DATA_DIR as it was before `stage_in_folder`."""
    global _outer_data_dir
    if _outer_data_dir is _UNSET:
        return
    if _outer_data_dir is None:
        os.environ.pop(DATA_DIR_ENV, None)
    else:
        os.environ[DATA_DIR_ENV] = str(_outer_data_dir)
    _outer_data_dir = _UNSET


def finish_wandb(exit_code: int) -> None:
    """Close the process's open W&B run, if any (a run that raised too, so that its offline
    files are complete and the next run in this process starts its own); staging returns to
    where it was before the run."""
    wandb = sys.modules.get("wandb")
    try:
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish(exit_code=exit_code)
    finally:
        restore_data_dir()


def wandb_confusion_chart(classes: list[str], confusion: np.ndarray, title: str) -> Any:
    """A multiclass confusion matrix (rows = true class) as W&B's confusion-matrix chart."""
    import wandb

    rows = [[a, p, int(confusion[i, j])] for i, a in enumerate(classes)
            for j, p in enumerate(classes)]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
    return wandb.plot_table(
        "wandb/confusion_matrix/v1", table,
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": title})


def use_artifact(run: Any, artifact: Any) -> None:
    """Declare a draft `wandb.Artifact` an input of `run` (the lineage graph's edge into the run).

    Online this is `run.use_artifact(artifact)`. wandb refuses `use_artifact` offline, so offline
    the run records the artifact the way `use_artifact` does for a draft online (wandb_run.py:
    `_log_artifact(..., use_after_commit=True)`): `wandb sync` then creates the version (or finds
    the one with the same content, e.g. the training run's model) and marks it used by the run."""
    if run.offline:
        run._log_artifact(artifact, is_user_created=True, use_after_commit=True)
    else:
        run.use_artifact(artifact)


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_PX, caption: str | None = None) -> Any:
    """An HxWx3 uint8 image as a `wandb.Image`, its longest side at most `size` pixels."""
    import wandb
    from PIL import Image

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    picture.thumbnail((size, size))
    return wandb.Image(picture, caption=caption)
