"""Face to style to outfit: a style classifier predicts each face's style; the catalogue is split
into one cluster per style (k-means on its embeddings) and each face gets items of its style's
cluster."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from fashionlab.errors import ConfigError
from fashionlab.recommend.config import task_by_name
from fashionlab.recommend.predict import Predictor, read_images
from fashionlab.retrieval.catalogue import Catalogue
from fashionlab.tasks import TaskSpec


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine; faiss.Kmeans, seeded): (assignment (N,), unit centroids (k, D)).
    Every cluster gets at least one item (an empty one takes the item least similar to its centroid
    among those of clusters with several)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if k < 1 or k > len(x):
        raise ConfigError(f"cannot split {len(x)} catalogue items into {k} clusters")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    km = faiss.Kmeans(x.shape[1], k, spherical=True, seed=int(seed), niter=int(iterations),
                      min_points_per_centroid=1, verbose=False)
    km.train(x)
    similarity = x @ km.centroids.T
    assignment = similarity.argmax(axis=1)
    for c in range(k):
        if not np.any(assignment == c):
            fit = similarity[np.arange(len(x)), assignment]
            fit[np.bincount(assignment, minlength=k)[assignment] < 2] = np.inf  # keep others non-empty
            assignment[int(np.argmin(fit))] = c
    return assignment, km.centroids.astype(np.float32)


def check_styles(
    styles: Mapping[str, Mapping[str, Sequence[str]]], style_names: Sequence[str], tasks: list[TaskSpec]
) -> None:
    """Every style has an entry naming catalogue tasks and their classes."""
    missing = [s for s in style_names if s not in styles]
    if missing:
        raise ConfigError(
            f"outfit.styles has no entry for style(s) {', '.join(missing)} "
            f"(the style model predicts: {', '.join(style_names)})"
        )
    for style in style_names:
        for task_name, classes in (styles[style] or {}).items():
            task = task_by_name(tasks, task_name, f"task in outfit.styles.{style}", "the catalogue's")
            for name in classes:
                if name not in task.classes:
                    raise ConfigError(
                        f"outfit.styles.{style}.{task_name} names unknown class {name!r}; "
                        f"classes: {', '.join(task.classes)}"
                    )


def style_match(gallery: pd.DataFrame, members: np.ndarray, style: Mapping[str, Sequence[str]]) -> float:
    """Share of (member, task) pairs whose predicted class is one the style lists."""
    if not style or not len(members):
        return 0.0
    hits = [
        gallery[f"pred_{task}"].iloc[members].isin(list(classes)).to_numpy()
        for task, classes in style.items()
    ]
    return float(np.mean(hits))


def name_clusters(match: np.ndarray) -> list[int]:
    """Style index of each cluster, one style per cluster, maximising the summed match."""
    k = match.shape[0]
    if k <= 8:
        best = max(itertools.permutations(range(k)), key=lambda p: sum(match[c, p[c]] for c in range(k)))
        return list(best)
    chosen: list[int] = [-1] * k
    free = set(range(k))
    for flat in np.argsort(-match, axis=None, kind="stable"):
        c, s = divmod(int(flat), k)
        if chosen[c] < 0 and s in free:
            chosen[c] = s
            free.discard(s)
    return chosen


@dataclass
class StyleClusters:
    """Per style: its cluster's member ids, nearest the centre first; plus a summary table."""

    members: dict[str, np.ndarray]
    summary: pd.DataFrame


def cluster_catalogue(
    catalogue: Catalogue,
    style_names: Sequence[str],
    styles: Mapping[str, Mapping[str, Sequence[str]]],
    seed: int = 0,
) -> StyleClusters:
    check_styles(styles, style_names, catalogue.tasks)
    embeddings = np.asarray(catalogue.embeddings, dtype=np.float32)
    assignment, centres = kmeans(embeddings, len(style_names), seed=seed)
    groups = [np.flatnonzero(assignment == c) for c in range(len(style_names))]
    match = np.array(
        [[style_match(catalogue.gallery, g, styles[s] or {}) for s in style_names] for g in groups]
    )
    naming = name_clusters(match)
    members: dict[str, np.ndarray] = {}
    rows = []
    for c, group in enumerate(groups):
        style = style_names[naming[c]]
        order = np.argsort(-(embeddings[group] @ centres[c]), kind="stable")
        members[style] = group[order]
        majority = {
            t.name: Counter(map(str, catalogue.gallery[f"pred_{t.name}"].iloc[group])).most_common(1)[0][0]
            for t in catalogue.tasks
        }
        rows.append(
            {
                "cluster": c,
                "style": style,
                "size": len(group),
                "match": round(float(match[c, naming[c]]), 3),
                "majority": " ".join(f"{k}={v}" for k, v in majority.items()),
            }
        )
    return StyleClusters(members, pd.DataFrame(rows))


@dataclass
class Outfits:
    """`faces`: file, style, style_prob, items (catalogue ids) or error; `clusters`: the summary."""

    faces: pd.DataFrame
    clusters: pd.DataFrame


def recommend_outfits(
    style_predictor: Predictor,
    catalogue: Catalogue,
    files: Sequence[Path],
    styles: Mapping[str, Mapping[str, Sequence[str]]],
    items: int = 5,
    style_task: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Outfits:
    task = task_by_name(style_predictor.tasks, style_task) if style_task else style_predictor.tasks[0]
    if items < 1:
        raise ConfigError(f"--items must be at least 1 (got {items})")
    clusters = cluster_catalogue(catalogue, list(task.classes), styles, seed=seed)
    images, errors = read_images(files, progress=progress, min_side=style_predictor.decode_min_side)
    good = [i for i, im in enumerate(images) if im is not None]
    preds = style_predictor.predict([images[i] for i in good]) if good else None
    where = {i: n for n, i in enumerate(good)}
    rows = []
    for i, path in enumerate(files):
        row = {"file": str(path), "style": None, "style_prob": None, "items": [], "error": errors[i]}
        if i in where:
            # the most likely style (for a multilabel style task too: one outfit per face)
            probs = preds.probs[task.name][where[i]]
            style = task.classes[int(np.argmax(probs))]
            row.update(style=style, style_prob=round(float(probs.max()), 4),
                       items=[int(j) for j in clusters.members[style][:items]])
        rows.append(row)
    return Outfits(pd.DataFrame(rows), clusters.summary)


def outfit_lines(outfits: Outfits) -> list[str]:
    """One tab-separated line per face: file, style, comma-separated item ids (or ERROR, message)."""
    lines = []
    for row in outfits.faces.to_dict("records"):
        if isinstance(row["error"], str):
            lines.append(f"{row['file']}\tERROR\t{row['error']}")
        else:
            lines.append(f"{row['file']}\t{row['style']}\t{','.join(map(str, row['items']))}")
    return lines
