"""Seeded, stratified splitting of a labelled set."""

from __future__ import annotations

import numpy as np

from fashionlab.errors import ConfigError


def stratified_split(
    labels: np.ndarray, holdout: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, holdout) with each class's share preserved.

    `holdout` is a count (int) or a fraction of the data (float in (0, 1)). Per-class holdout
    sizes are allocated by largest remainder, so the total is exact and every class with at
    least two samples keeps at least one on each side.
    """
    labels = np.asarray(labels)
    n = len(labels)
    n_holdout = round(holdout * n) if isinstance(holdout, float) else int(holdout)
    if not 0 < n_holdout < n:
        raise ConfigError(f"holdout size {holdout!r} must leave samples on both sides of {n}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n_holdout / n)
    per_class = np.floor(exact).astype(int)
    order = np.argsort(-(exact - per_class), kind="stable")
    per_class[order[: n_holdout - per_class.sum()]] += 1
    per_class = np.minimum(per_class, np.maximum(counts - 1, 0))
    keep, held = [], []
    for cls, k in zip(classes, per_class, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        held.append(idx[:k])
        keep.append(idx[k:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))
