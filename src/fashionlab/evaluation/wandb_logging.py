"""The W&B side of an evaluation beyond its metrics (evaluation.report.log_to_wandb): lineage
(the model artifact as input, the evaluation folder as output), a table of queries with their
top-k retrieved images, and the embedding projection table.

Lineage reads dataset -> model -> evaluation: the training run used the `dataset-*` artifact and
logged `model-<run id>`; the evaluation run uses that model (same name, same content: the checkpoint
file, so W&B resolves it to the training run's version) and logs `evaluation-<model>`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionlab.inference.labels import label_names
from fashionlab.retrieval.catalogue import EMBEDDINGS_FILE, GALLERY_FILE, INDEX_FILE
from fashionlab.retrieval.manifest import MANIFEST
from fashionlab.retrieval.metrics import relevance
from fashionlab.tasks import TaskSpec
from fashionlab.wandb_utils import thumbnail, use_artifact

log = logging.getLogger(__name__)

#: The evaluation folder's files in the `evaluation` artifact (those present), as `Catalogue.load`
#: and the recommend commands read them; figures are added too. Not: .hydra/, the log, wandb/.
ARTIFACT_FILES = ("report.json", "report.md", MANIFEST, INDEX_FILE, EMBEDDINGS_FILE, GALLERY_FILE,
                  "query_embeddings.npy", "queries.parquet")
#: The checkpoint key written by training.wandb_logging.WandbRunPage (not imported: layering).
CHECKPOINT_KEY = "wandb"


@dataclass
class RetrievalSamples:
    """What the tables need from an evaluation: the retrieval view's tasks, gallery and query
    (evaluation.protocol.retrieval_view of evaluation.run.SplitEmbeddings) and each query's exact
    top ids."""

    tasks: list[TaskSpec]
    gallery: Any
    query: Any
    top_ids: np.ndarray


def training_wandb_info(ckpt_path: str | Path) -> dict[str, Any]:
    """The W&B run and model artifact a checkpoint was logged as ({} when it was trained
    without W&B, or before the project recorded it)."""
    try:
        checkpoint = torch.load(str(ckpt_path), map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError, OSError) as error:  # e.g. a legacy (non-zip) file cannot be mapped
        log.warning("W&B: the checkpoint's run record is unreadable (%s); model named by hash", error)
        return {}
    info = checkpoint.get(CHECKPOINT_KEY)
    return dict(info) if isinstance(info, dict) else {}


def model_artifact(ckpt_path: str | Path, sha256: str) -> Any:
    """The checkpoint as a draft `model` artifact named like the training run's (`model-<run id>`,
    file `model.ckpt`), else `model-<sha256[:12]>` for a checkpoint trained without W&B."""
    import wandb

    info = training_wandb_info(ckpt_path)
    name = info.get("model_artifact") or f"model-{sha256[:12]}"
    artifact = wandb.Artifact(name, type="model", metadata={"checkpoint_sha256": sha256,
                                                           "training_run": info.get("run_id")})
    artifact.add_file(str(ckpt_path), name="model.ckpt", policy="immutable")
    return artifact


def evaluation_artifact(out: Path, model_name: str, report: dict[str, Any]) -> Any:
    """The evaluation folder's files (ARTIFACT_FILES present, figures) as an `evaluation` artifact
    (files referenced in place: `wandb sync` uploads them from the folder)."""
    import wandb

    metadata = {"checkpoint_sha256": report["checkpoint_sha256"],
                "data_fingerprint": report["data_fingerprint"],
                "index": report["index"]["type"], "gallery_split": report["gallery_split"],
                "query_split": report["query_split"], "num_gallery": report["num_gallery"],
                "retrieval": report["retrieval"]["metrics"],
                "classification": {t: {k: c[k] for k in ("acc", "f1_macro")}
                                   for t, c in report["classification"].items()}}
    artifact = wandb.Artifact(f"evaluation-{model_name.removeprefix('model-')}", type="evaluation",
                              metadata=metadata)
    files = [out / name for name in ARTIFACT_FILES] + sorted(out.glob("*.png"))
    for path in files:
        if path.is_file():
            artifact.add_file(str(path), name=path.name, policy="immutable")
    return artifact


def retrieval_table(samples: RetrievalSamples, num_queries: int, k: int) -> Any:
    """Evenly spaced queries (as retrieval_examples.png) with their top-k gallery images, each
    cell captioned with its label (first task) and whether it is relevant."""
    import wandb

    task = samples.tasks[0]
    gallery, query = samples.gallery, samples.query
    n_q, k = min(num_queries, len(query)), min(k, samples.top_ids.shape[1])
    rows = np.linspace(0, len(query) - 1, n_q).round().astype(int)
    ids = samples.top_ids[rows, :k]
    hits = relevance(query.targets[task.name][rows], gallery.targets[task.name], ids)
    query_labels = label_names(task, query.targets[task.name][rows])
    data = []
    for r, row in enumerate(rows):
        found = label_names(task, gallery.targets[task.name][ids[r]])
        cells = [thumbnail(gallery.dataset.raw_image(int(gallery.index[g])),
                           caption=f"{label} {'hit' if hit else 'miss'}")
                 for g, label, hit in zip(ids[r], found, hits[r], strict=True)]
        data.append([thumbnail(query.dataset.raw_image(int(query.index[row]))), str(query_labels[r]),
                     int(hits[r].sum()), *cells])
    return wandb.Table(columns=["query", "label", "hits", *[f"top_{i + 1}" for i in range(k)]], data=data)


def projection_table(samples: RetrievalSamples, size: int) -> Any:
    """A bounded, evenly spaced sample of gallery embeddings for W&B's 2-D projection panel: an id
    (text), a thumbnail, the true label per task, then one numeric column per dimension (emb_i),
    the only numbers in the table, so the panel projects exactly the embedding."""
    import wandb

    gallery, tasks = samples.gallery, samples.tasks
    picked = np.unique(np.linspace(0, len(gallery) - 1, min(size, len(gallery))).round().astype(int))
    labels = {t.name: label_names(t, gallery.targets[t.name][picked]) for t in tasks}
    table = wandb.Table(columns=["id", "image", *[t.name for t in tasks]], data=[
        [str(int(i)), thumbnail(gallery.dataset.raw_image(int(gallery.index[i]))),
         *[str(labels[t.name][j]) for t in tasks]] for j, i in enumerate(picked)])
    # One column at a time: several times faster than rows of ~1000 cells (wandb checks each row's types).
    values = np.round(gallery.embeddings[picked].astype(float), 5)
    for d in range(values.shape[1]):
        table.add_column(f"emb_{d}", values[:, d].tolist())
    return table


def log_lineage_and_tables(run: Any, cfg: Any, out: Path, report: dict[str, Any], ckpt_path: str | Path,
                           samples: RetrievalSamples) -> None:
    """Use the model artifact, log the evaluation artifact, the retrieval examples table
    (`eval/retrieval/examples`) and the projection table (`eval/embeddings/projection`)."""
    model = model_artifact(ckpt_path, report["checkpoint_sha256"])
    use_artifact(run, model)
    run.log_artifact(evaluation_artifact(out, model.name.split(":")[0], report), aliases=["latest"])
    size = int(cfg.wandb.get("projection_items", 512))
    payload = {"eval/retrieval/examples": retrieval_table(samples, int(cfg.examples.num_queries),
                                                          int(cfg.examples.k))}
    if size > 0:
        payload["eval/embeddings/projection"] = projection_table(samples, size)
    run.log(payload)
    run.summary.update({"model_artifact": model.name})
