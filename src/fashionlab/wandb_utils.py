"""W&B helpers shared by training, evaluation and sweeps: closing the process's run, confusion
charts, declaring an artifact a run's input (online and offline), image thumbnails."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Longest side of the images put into W&B tables (bounded file size on the run page).
THUMBNAIL_PX = 96


def finish_wandb(exit_code: int) -> None:
    """Close the process's open W&B run, if any (a run that raised too, so that its offline
    files are complete and the next run in this process starts its own)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


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
