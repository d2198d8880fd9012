"""Catalogue items most similar to a query image (cosine similarity on the saved index)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fashionlab.recommend.catalogue_io import check_k, item_labels, item_source, results_table
from fashionlab.recommend.config import category_task
from fashionlab.recommend.grids import save_grid
from fashionlab.retrieval.catalogue import Catalogue

if TYPE_CHECKING:
    from fashionlab.recommend.predict import Predictions, Predictor


@dataclass
class SimilarResult:
    """The query (its image, predicted labels, and catalogue id when it is an item) and the ranked
    results: rank, id, path, score and the items' predicted labels."""

    query_image: np.ndarray
    query_labels: dict[str, object]
    query_source: str
    results: pd.DataFrame
    query_id: int | None = None
    category: str | None = None


def _search(
    catalogue: Catalogue,
    embedding: np.ndarray,
    k: int,
    category_name: str | None,
    category_value: object | None,
    exclude: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(catalogue.gallery)
    allowed = np.ones(n, dtype=bool)
    what = "the catalogue"
    if category_name is not None:
        allowed &= (catalogue.gallery[f"pred_{category_name}"] == category_value).to_numpy()
        what = f"the catalogue's {category_name}={category_value} items"
    if exclude is not None:
        allowed[exclude] = False
        what += " without the query item"
    check_k(k, int(allowed.sum()), what)
    allowed_ids = None if allowed.all() else np.flatnonzero(allowed).astype(np.int64)
    scores, ids = catalogue.search(embedding.reshape(1, -1).astype(np.float32), k, allowed_ids=allowed_ids)
    found = ids[0] >= 0  # approximate indexes pad with -1 when a filter leaves too few candidates
    return scores[0][found], ids[0][found]


def similar_to_image(
    predictor: Predictor,
    catalogue: Catalogue,
    image: np.ndarray,
    k: int,
    same_category: bool = False,
    category: str | None = None,
    source: str = "query",
    predictions: Predictions | None = None,
) -> SimilarResult:
    """Top-k items for a decoded RGB image; `same_category` keeps items whose predicted
    category (task `category`, see config.category_task) is the query's. `predictions`: the
    image's own `predictor.predict([image])` when the caller already has it (one model run)."""
    preds = predictions if predictions is not None else predictor.predict([image])
    labels = {t.name: preds.labels[t.name][0] for t in predictor.tasks}
    cat = category_task(catalogue.tasks, category) if same_category else None
    scores, ids = _search(
        catalogue,
        preds.embeddings[0],
        k,
        cat.name if cat else None,
        labels[cat.name] if cat else None,
        exclude=None,
    )
    return SimilarResult(
        image, labels, source, results_table(catalogue, ids, scores), category=cat.name if cat else None
    )


def similar_to_item(
    catalogue: Catalogue, item_id: int, k: int, same_category: bool = False, category: str | None = None
) -> SimilarResult:
    """Top-k items for a catalogue item (the item itself left out)."""
    labels = item_labels(catalogue, item_id)
    cat = category_task(catalogue.tasks, category) if same_category else None
    scores, ids = _search(
        catalogue,
        np.asarray(catalogue.embeddings[item_id]),
        k,
        cat.name if cat else None,
        labels[cat.name] if cat else None,
        exclude=item_id,
    )
    source = item_source(catalogue.gallery.iloc[int(item_id)])
    return SimilarResult(
        catalogue.image(int(item_id)),
        labels,
        source,
        results_table(catalogue, ids, scores),
        query_id=int(item_id),
        category=cat.name if cat else None,
    )


def random_item(catalogue: Catalogue, seed: int | None = None) -> int:
    return int(np.random.default_rng(seed).integers(len(catalogue.gallery)))


def result_captions(results: pd.DataFrame, label_task: str | None = None) -> list[str]:
    captions = []
    for row in results.to_dict("records"):
        second = str(row.get(label_task, "")) if label_task else ""
        captions.append(f"#{row['rank']} id {row['id']} {row['score']:.3f}\n{second}")
    return captions


def save_similar_grid(
    result: SimilarResult,
    catalogue: Catalogue,
    path,
    label_task: str | None = None,
    tile_size: int = 112,
    columns: int = 0,
) -> None:
    """Query first, then the results in rank order."""
    label_task = label_task or catalogue.tasks[0].name
    images = [result.query_image] + [catalogue.image(int(i)) for i in result.results["id"]]
    query_caption = f"query\n{result.query_labels.get(label_task, '')}"
    save_grid(
        images,
        [query_caption, *result_captions(result.results, label_task)],
        path,
        tile_size=tile_size,
        columns=columns,
    )
