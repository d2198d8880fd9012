"""Style profiles: the averaged predicted attribute distributions ("fashion vector") and mean
embedding of several liked images, and catalogue items ranked against them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashionlab.errors import ConfigError
from fashionlab.recommend.catalogue_io import check_k, results_table
from fashionlab.recommend.config import task_by_name
from fashionlab.recommend.predict import Predictor
from fashionlab.retrieval.catalogue import Catalogue
from fashionlab.tasks import TaskSpec


@dataclass
class StyleProfile:
    """Per task, the mean predicted distribution over its classes; and the mean embedding
    (re-normalised)."""

    tasks: list[TaskSpec]
    distributions: dict[str, np.ndarray]
    embedding: np.ndarray
    num_images: int

    def top(self, task: str, n: int = 3) -> list[tuple[str, float]]:
        spec = task_by_name(self.tasks, task)
        dist = self.distributions[task]
        order = np.argsort(-dist)[:n]
        return [(spec.classes[i], float(dist[i])) for i in order]

    def preferred(self, task: TaskSpec) -> set[str]:
        """Classes the profile prefers: the most likely class (multilabel: those >= 0.5)."""
        dist = self.distributions[task.name]
        if task.kind == "multilabel":
            return {c for c, p in zip(task.classes, dist, strict=True) if p >= 0.5}
        return {task.classes[int(np.argmax(dist))]}

    def as_dict(self) -> dict:
        return {
            "num_images": self.num_images,
            "fashion_vector": {
                t.name: {
                    c: round(float(p), 4) for c, p in zip(t.classes, self.distributions[t.name], strict=True)
                }
                for t in self.tasks
            },
        }


def build_profile(predictor: Predictor, images: Sequence[np.ndarray]) -> StyleProfile:
    preds = predictor.predict(images)
    mean = preds.embeddings.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    embedding = (mean / norm if norm > 0 else mean).astype(np.float32)
    distributions = {t.name: preds.probs[t.name].mean(axis=0) for t in predictor.tasks}
    return StyleProfile(list(predictor.tasks), distributions, embedding, len(images))


def _as_list(value: object) -> list:
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return [] if value is None or (isinstance(value, float) and np.isnan(value)) else [value]


def attribute_scores(
    profile: StyleProfile, gallery: pd.DataFrame, tasks: list[TaskSpec], task_weights: Mapping[str, float]
) -> tuple[np.ndarray, list[list[str]]]:
    """Per item: the weighted mean over `tasks` of the profile's probability of the item's
    predicted class (multilabel: mean over its predicted classes), and the matched attributes
    (`task=class` where the item's class is one the profile prefers)."""
    total = np.zeros(len(gallery))
    weight_sum = 0.0
    matched: list[list[str]] = [[] for _ in range(len(gallery))]
    for task in tasks:
        weight = float(task_weights.get(task.name, 1.0))
        dist = profile.distributions[task.name]
        lookup = {c: float(dist[i]) for i, c in enumerate(task.classes)}
        preferred = profile.preferred(task)
        column = gallery[f"pred_{task.name}"].tolist()
        values = np.zeros(len(gallery))
        for i, value in enumerate(column):
            names = _as_list(value)
            values[i] = np.mean([lookup.get(n, 0.0) for n in names]) if names else 0.0
            matched[i].extend(f"{task.name}={n}" for n in names if n in preferred)
        total += weight * values
        weight_sum += weight
    return total / max(weight_sum, 1e-12), matched


def rank_catalogue(
    profile: StyleProfile,
    catalogue: Catalogue,
    k: int,
    weights: Mapping[str, float],
    tasks: Sequence[str] | None = None,
    task_weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Top-k items by weights.attributes * attribute agreement + weights.embedding * cosine
    similarity, with the score parts and the matched attributes of each."""
    check_k(k, len(catalogue.gallery))
    unknown = set(weights) - {"attributes", "embedding"}
    if unknown:
        raise ConfigError(
            f"profile.weights has unknown key(s) {', '.join(sorted(unknown))}; expected attributes, embedding"
        )
    specs = [task_by_name(catalogue.tasks, name) for name in tasks] if tasks else list(catalogue.tasks)
    for name in task_weights or {}:
        task_by_name(catalogue.tasks, name, "task in profile.task_weights")
    attr, matched = attribute_scores(profile, catalogue.gallery, specs, task_weights or {})
    emb = np.asarray(catalogue.embeddings, dtype=np.float32) @ profile.embedding
    score = float(weights.get("attributes", 0.0)) * attr + float(weights.get("embedding", 0.0)) * emb
    order = np.argsort(-score, kind="stable")[:k]
    table = results_table(catalogue, order, score[order])
    table.insert(4, "attribute_score", np.round(attr[order], 4))
    table.insert(5, "embedding_score", np.round(emb[order], 4))
    table.insert(6, "matched", [", ".join(matched[i]) for i in order])
    return table
