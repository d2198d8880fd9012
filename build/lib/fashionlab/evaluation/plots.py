"""Figures of an evaluation: confusion matrices and a grid of retrieval examples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torchmetrics.utilities.plot import plot_confusion_matrix


def plot_confusion(confusion: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """Confusion matrix with counts in the cells (rows = true class), drawn by torchmetrics."""
    size = max(4.0, 0.75 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    plot_confusion_matrix(torch.as_tensor(np.asarray(confusion)), ax=ax, labels=list(classes),
                          cmap="Blues")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_retrieval_examples(query_ids: Sequence[int], result_ids: np.ndarray, correct: np.ndarray,
                            query_image: Callable[[int], np.ndarray],
                            gallery_image: Callable[[int], np.ndarray],
                            query_titles: Sequence[str], path: Path) -> Path:
    """One row per query: the query, then its top-k results framed green (relevant) or red."""
    rows, k = len(query_ids), result_ids.shape[1]
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.3 * (k + 1), 1.45 * rows), squeeze=False)
    for r, qid in enumerate(query_ids):
        axes[r, 0].imshow(query_image(int(qid)))
        axes[r, 0].set_title(query_titles[r], fontsize=7)
        for c in range(k):
            ax = axes[r, c + 1]
            gid = int(result_ids[r, c])
            if gid >= 0:
                ax.imshow(gallery_image(gid))
                colour = "tab:green" if correct[r, c] else "tab:red"
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(3)
                ax.set_title(("✓ " if correct[r, c] else "✗ ") + str(c + 1), fontsize=7, color=colour)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("query", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
