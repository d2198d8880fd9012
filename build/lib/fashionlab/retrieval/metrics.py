"""Retrieval metrics from ranked neighbour lists, vectorised, with pytorch-metric-learning's
AccuracyCalculator definitions (see docs/evaluation.md, "Metric definitions").

Relevant = same label (multiclass) or at least one shared positive label (multilabel).
`R` of a query is its number of relevant gallery items, the query itself excluded when it is
in the gallery. Queries with an unknown label or with R = 0 are left out of every mean.
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (1, 5, 10)


def drop_self(ids: np.ndarray, scores: np.ndarray, self_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own gallery id from its (k+1)-long result row (the last entry where
    the row does not contain it), as AccuracyCalculator does with ref_includes_query."""
    ids, scores = np.asarray(ids), np.asarray(scores)
    is_self = ids == np.asarray(self_ids)[:, None]
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    first = is_self.argmax(axis=1)
    is_self = np.zeros_like(is_self)
    is_self[np.arange(len(ids)), first] = True
    keep = ~is_self
    shape = (ids.shape[0], ids.shape[1] - 1)
    return ids[keep].reshape(shape), scores[keep].reshape(shape)


def label_valid(labels: np.ndarray) -> np.ndarray:
    """Known labels: >= 0 for class indices, any positive for multi-hot rows."""
    labels = np.asarray(labels)
    return labels >= 0 if labels.ndim == 1 else labels.sum(axis=1) > 0


def relevant_counts(query_labels: np.ndarray, gallery_labels: np.ndarray,
                    query_in_gallery: np.ndarray | None = None) -> np.ndarray:
    """R per query: relevant gallery items, minus one for a query that is itself in the gallery."""
    q, g = np.asarray(query_labels), np.asarray(gallery_labels)
    if q.ndim == 1:
        known = g[g >= 0]
        size = int(max(known.max(initial=-1), q.max(initial=-1))) + 1
        counts = np.bincount(known, minlength=size)
        r = np.where(q >= 0, counts[np.clip(q, 0, None)], 0)
    else:
        r = ((q.astype(np.float32) @ g.astype(np.float32).T) > 0).sum(axis=1)
    if query_in_gallery is not None:
        r = r - np.asarray(query_in_gallery, dtype=np.int64)
    return np.maximum(r, 0).astype(np.int64)


def relevance(query_labels: np.ndarray, gallery_labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(Q, K) bool: gallery item ids[q, j] is relevant to query q (ids of -1 never are)."""
    q, g = np.asarray(query_labels), np.asarray(gallery_labels)
    found = ids >= 0
    neighbours = g[np.where(found, ids, 0)]
    if q.ndim == 1:
        rel = (neighbours == q[:, None]) & (q[:, None] >= 0)
    else:
        rel = (neighbours.astype(bool) & q[:, None, :].astype(bool)).any(axis=-1)
    return rel & found


def recall_at_k(rel: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per-query Recall@k for each k, as in the retrieval benchmarks (e.g. DeepFashion In-shop):
    1.0 when at least one relevant gallery item is among the first k results, else 0.0.
    `rel` is the (Q, K) relevance of the ranked results (a k beyond K counts the K results)."""
    rel = np.asarray(rel, dtype=bool)
    hit_rank = np.where(rel.any(axis=1), rel.argmax(axis=1) + 1, np.iinfo(np.int64).max)
    return {int(k): (hit_rank <= k).astype(np.float64) for k in ks}


def per_query_metrics(rel: np.ndarray, r: np.ndarray,
                      ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Per-query values of every metric from a (Q, K) relevance matrix and R per query."""
    rel = np.asarray(rel, dtype=bool)
    depth = rel.shape[1]
    ranks = np.arange(1, depth + 1)
    within_r = ranks[None, :] <= r[:, None]
    rel_r = rel & within_r
    hits_r = np.cumsum(rel_r, axis=1)
    out: dict[str, np.ndarray] = {"precision_at_1": rel[:, 0].astype(np.float64)}
    for k, hits in recall_at_k(rel, ks).items():
        out[f"recall_at_{k}"] = hits
    with np.errstate(invalid="ignore", divide="ignore"):
        out["r_precision"] = rel_r.sum(axis=1) / within_r.sum(axis=1)
        out["map_at_r"] = (hits_r * rel_r / ranks).sum(axis=1) / r
    first = rel.argmax(axis=1)
    out["mrr"] = np.where(rel.any(axis=1), 1.0 / (first + 1), 0.0)
    return out


class RetrievalAccumulator:
    """Accumulates per-query metrics over query batches; `compute()` averages the valid queries."""

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS) -> None:
        self.ks = tuple(int(k) for k in ks)
        self.parts: list[dict[str, np.ndarray]] = []
        self.skipped = 0

    def update(self, query_labels: np.ndarray, gallery_labels: np.ndarray, ids: np.ndarray,
               r: np.ndarray) -> None:
        valid = label_valid(query_labels) & (r > 0)
        self.skipped += int((~valid).sum())
        if valid.any():
            rel = relevance(np.asarray(query_labels)[valid], gallery_labels, ids[valid])
            self.parts.append(per_query_metrics(rel, r[valid], self.ks))

    def compute(self) -> dict[str, float]:
        names = ["precision_at_1", *[f"recall_at_{k}" for k in self.ks], "map_at_r", "r_precision", "mrr"]
        if not self.parts:
            return {**dict.fromkeys(names, float("nan")), "num_queries": 0, "skipped_queries": self.skipped}
        merged = {name: np.concatenate([p[name] for p in self.parts]) for name in names}
        out: dict[str, float] = {name: float(values.mean()) for name, values in merged.items()}
        out["num_queries"] = len(merged["mrr"])
        out["skipped_queries"] = self.skipped
        return out


def retrieval_metrics(query_labels: np.ndarray, gallery_labels: np.ndarray, ids: np.ndarray,
                      r: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean P@1, Recall@k, mAP@R, R-precision and MRR over the valid queries (one batch)."""
    acc = RetrievalAccumulator(ks)
    acc.update(query_labels, gallery_labels, ids, r)
    return acc.compute()


def recall_vs_exact(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    approx, exact = np.asarray(approx_ids)[:, :k], np.asarray(exact_ids)[:, :k]
    hits = (approx[:, :, None] == exact[:, None, :]) & (exact[:, None, :] >= 0)
    return float(hits.any(axis=1).sum(axis=1).mean() / k)
