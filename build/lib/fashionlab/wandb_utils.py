"""W&B helpers shared by training and evaluation: closing the process's run, confusion charts."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


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
