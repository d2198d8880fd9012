"""`python evaluate.py ckpt_path=...`: classification and retrieval evaluation of one checkpoint.

Writes one evaluation directory (by default `<training run>/eval/<date>_<time>_<6 hex>/`): report.json,
report.md, confusion_<task>.png, retrieval_examples.png, embeddings.npy, gallery.parquet,
index.faiss and manifest.json; when the query split is not the gallery, also query_embeddings.npy and
queries.parquet, so that every retrieval figure can be recomputed from the folder alone.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from fashionlab.config_safety import DATA, safe_instantiate
from fashionlab.errors import ConfigError
from fashionlab.evaluation.classification import classification_report
from fashionlab.evaluation.data_check import check_data_identity
from fashionlab.evaluation.plots import plot_confusion, plot_retrieval_examples
from fashionlab.evaluation.protocol import (
    check_protocol,
    protocol_summary,
    retrieval_view,
    with_data_protocol,
)
from fashionlab.evaluation.report import headline, log_to_wandb, wandb_settings, write_report_md
from fashionlab.evaluation.wandb_logging import RetrievalSamples, log_lineage_and_tables, training_wandb_info
from fashionlab.fileio import write_json
from fashionlab.inference.checkpoint import LoadedCheckpoint, load_checkpoint
from fashionlab.inference.embed import extract
from fashionlab.inference.labels import label_names, predicted_indices
from fashionlab.models.build import resolved_config
from fashionlab.provenance import git_info
from fashionlab.redaction import config_secrets, masked_argv, masked_config, scrub_files
from fashionlab.retrieval.catalogue import EMBEDDINGS_FILE, GALLERY_FILE, INDEX_FILE
from fashionlab.retrieval.index import build_index, save_index, search
from fashionlab.retrieval.manifest import make_manifest, write_manifest
from fashionlab.retrieval.metrics import (
    RetrievalAccumulator,
    drop_self,
    label_valid,
    recall_vs_exact,
    relevance,
    relevant_counts,
)
from fashionlab.rundir import (  # noqa: F401  (eval_dir_for: re-exported)
    check_run_folder,
    checkpoint_run_dir,
    eval_dir_for,
)
from fashionlab.tasks import TaskSpec, tasks_to_config
from fashionlab.wandb_utils import finish_wandb

log = logging.getLogger(__name__)


#: Keys of evaluate.yaml's `data:` block that steer the evaluation rather than the data module.
EVAL_ONLY_DATA_KEYS = ("allow_changed",)


def data_config(loaded: LoadedCheckpoint, overrides: Mapping[str, Any] | None) -> DictConfig:
    """The training run's data config with the non-null keys of `overrides` merged in, and the
    checkpoint's tasks (classes in the model's order) imposed, so that `classes: auto` cannot
    re-derive other classes or another order from today's data.

    A cache location is never taken from the checkpoint: `data.cache.dir` and its
    `storage_options` are the user's (`overrides`; none: the files are read, no cache), the
    other cache settings (format, quality: what the stored bytes are) the checkpoint's."""
    data = copy.deepcopy(loaded.cfg.data)
    overrides = dict(overrides or {})
    user_cache = overrides.pop("cache", None)
    if isinstance(user_cache, DictConfig):
        user_cache = OmegaConf.to_container(user_cache, resolve=True)
    user_cache = {k: v for k, v in dict(user_cache or {}).items() if v is not None}
    extra = {k: v for k, v in overrides.items() if v is not None and k not in EVAL_ONLY_DATA_KEYS}
    data = OmegaConf.merge(data, extra) if extra else data
    stored = data.get("cache")
    if stored is not None or user_cache.get("dir"):
        if stored is not None and stored.get("dir") and stored.get("dir") != user_cache.get("dir"):
            log.info("data cache: the checkpoint's data.cache.dir=%s is not used (a location read from "
                     "a checkpoint is never followed); the images are read from data.root, or from "
                     "the cache you pass as data.cache.dir", stored.get("dir"))
        cache = {**(OmegaConf.to_container(stored, resolve=True) if stored is not None else {}),
                 "dir": None, "storage_options": {}, **user_cache}
        with open_dict(data):
            data.cache = cache
    OmegaConf.update(data, "tasks", tasks_to_config(loaded.tasks), merge=False)
    return data


def eval_loader(datamodule: Any, split: str, batch_size: int | None) -> DataLoader:
    """A loader over `split` with the evaluation transforms (no augmentation), in dataset order."""
    return datamodule.inference_loader(split, batch_size)


class SplitEmbeddings:
    """Embeddings, probabilities and labels of one split, in dataset order."""

    def __init__(self, loaded: LoadedCheckpoint, datamodule: Any, split: str, batch_size: int | None,
                 progress: bool | None, devices: int = 1, strategy: str = "ddp_spawn") -> None:
        started = time.perf_counter()
        self.split = split
        self.dataset = datamodule.splits[split]
        self.embeddings, self.probs, extra = extract(
            loaded.module, eval_loader(datamodule, split, batch_size), return_targets=True,
            progress=progress, devices=devices, strategy=strategy)
        self.index = extra["index"]
        self.targets = extra["targets"]
        self.seconds = time.perf_counter() - started
        self.preds = predicted_indices(loaded.tasks, self.probs)

    def __len__(self) -> int:
        return len(self.embeddings)


#: The query split's embeddings and table (same columns as gallery.parquet), when it is not the gallery.
QUERY_EMBEDDINGS_FILE = "query_embeddings.npy"
QUERIES_FILE = "queries.parquet"


def gallery_table(tasks: list[TaskSpec], gallery: SplitEmbeddings,
                  relevance_labels: tuple[list[TaskSpec], Any] | None = None) -> pd.DataFrame:
    """gallery.parquet (or queries.parquet): id, split, index, path, true label and prediction per
    task; with `relevance_labels` (the data's retrieval labels and the split's relabelled view,
    see evaluation.protocol), a `relevance_<label>` column per label as well."""
    infos = [gallery.dataset.item_info(int(i)) for i in gallery.index]
    table: dict[str, Any] = {
        "id": np.arange(len(gallery), dtype=np.int64),
        "split": [gallery.split] * len(gallery),
        "index": gallery.index.astype(np.int64),
        "path": [None if info.get("path") is None else str(info["path"]) for info in infos],
    }
    for task in tasks:
        table[task.name] = label_names(task, gallery.targets[task.name])
        table[f"pred_{task.name}"] = label_names(task, gallery.preds[task.name])
    for label in (relevance_labels or ([], None))[0]:
        table[f"relevance_{label.name}"] = label_names(label, relevance_labels[1].targets[label.name])
    return pd.DataFrame(table)


def retrieval_evaluation(cfg: DictConfig, tasks: list[TaskSpec], gallery: SplitEmbeddings,
                         query: SplitEmbeddings, index: Any, info: dict[str, Any],
                         exclude_self: bool) -> tuple[dict[str, Any], np.ndarray]:
    """Label metrics on the exact ranking (full depth R), the configured index's top-k figures
    and its recall against exact, and the optional search within the predicted label.
    Returns (results, exact top-k ids used for the examples)."""
    rcfg = cfg.retrieval
    ks = tuple(sorted({int(k) for k in rcfg.ks} | {int(rcfg.k)}))
    top = max(max(ks), int(rcfg.recall_vs_exact_k))
    extra = int(exclude_self)
    n = len(gallery)
    if top + extra > n:
        raise ConfigError(f"retrieval.k / ks / recall_vs_exact_k ask for {top} results per query, but the "
                          f"gallery ({gallery.split}) holds {n - extra} candidates")
    self_ids = np.arange(len(query)) if exclude_self else None
    r_by_task = {t.name: relevant_counts(query.targets[t.name], gallery.targets[t.name],
                                         None if self_ids is None else np.ones(len(query), bool))
                 for t in tasks}
    max_r = max((int(r[label_valid(query.targets[n_])].max(initial=0)) for n_, r in r_by_task.items()),
                default=0)
    if rcfg.max_r is not None:
        max_r = min(max_r, int(rcfg.max_r))
    depth = min(max(top, max_r), n - extra)
    exact_index, exact_info = (index, info) if info["type"] == "flat" else build_index(
        gallery.embeddings, {"type": "flat"})
    accumulators = {t.name: RetrievalAccumulator(ks) for t in tasks}
    exact_top = np.empty((len(query), top), dtype=np.int64)
    chunk = int(rcfg.query_batch)
    started = time.perf_counter()
    for s in range(0, len(query), chunk):
        e = min(s + chunk, len(query))
        scores, ids = search(exact_index, exact_info, query.embeddings[s:e], depth + extra)
        if exclude_self:
            ids, scores = drop_self(ids, scores, self_ids[s:e])
        exact_top[s:e] = ids[:, :top]
        for task in tasks:
            accumulators[task.name].update(query.targets[task.name][s:e], gallery.targets[task.name],
                                           ids, r_by_task[task.name][s:e])
    exact_seconds = time.perf_counter() - started
    results: dict[str, Any] = {
        "ks": list(ks), "depth": depth, "exclude_self": exclude_self,
        "metrics": {t.name: accumulators[t.name].compute() for t in tasks},
        "timings": {"exact_search_s": exact_seconds,
                    "exact_search_qps": len(query) / max(exact_seconds, 1e-9)},
    }
    if info["type"] != "flat":
        started = time.perf_counter()
        scores, ids = search(index, info, query.embeddings, top + extra)
        seconds = time.perf_counter() - started
        if exclude_self:
            ids, scores = drop_self(ids, scores, self_ids)
        kk = int(rcfg.recall_vs_exact_k)
        results["index"] = {
            f"recall_at_{kk}_vs_exact": recall_vs_exact(ids, exact_top, kk),
            "metrics": {t.name: shallow(RetrievalAccumulator(ks), query.targets[t.name],
                                        gallery.targets[t.name], ids, r_by_task[t.name]) for t in tasks},
        }
        results["timings"].update(index_search_s=seconds, index_search_qps=len(query) / max(seconds, 1e-9))
    if rcfg.within_label:
        results["within_label"] = within_label_search(rcfg.within_label, tasks, gallery, query, index, info,
                                                      top, extra, self_ids, ks, r_by_task)
    return results, exact_top


def shallow(acc: RetrievalAccumulator, q: np.ndarray, g: np.ndarray, ids: np.ndarray,
            r: np.ndarray) -> dict[str, float]:
    """Metrics of a top-k list too short for mAP@R and R-precision (those two are left out)."""
    acc.update(q, g, ids, r)
    return {k: v for k, v in acc.compute().items() if k not in ("map_at_r", "r_precision")}


def within_label_search(task_name: str, tasks: list[TaskSpec], gallery: SplitEmbeddings,
                        query: SplitEmbeddings, index: Any, info: dict[str, Any], top: int, extra: int,
                        self_ids: np.ndarray | None, ks: tuple[int, ...],
                        r_by_task: dict[str, np.ndarray]) -> dict[str, Any]:
    """Search each query only among gallery items whose `task_name` label is the query's
    predicted class (the "search within label" approach); top-k metrics per task."""
    by_name = {t.name: t for t in tasks}
    if task_name not in by_name or by_name[task_name].kind != "multiclass":
        raise ConfigError(f"retrieval.within_label={task_name!r}: expected a multiclass task "
                          f"({', '.join(t.name for t in tasks if t.kind == 'multiclass')})")
    predicted = query.preds[task_name]
    gallery_labels = gallery.targets[task_name]
    ids = np.full((len(query), top), -1, dtype=np.int64)
    started = time.perf_counter()
    for label in np.unique(predicted):
        rows = np.flatnonzero(predicted == label)
        allowed = np.flatnonzero(gallery_labels == label)
        if len(allowed) == 0:
            continue
        _, found = search(index, info, query.embeddings[rows], top + extra, allowed_ids=allowed)
        if extra:
            found, _ = drop_self(found, np.zeros_like(found, dtype=np.float32), self_ids[rows])
        ids[rows] = found[:, :top]
    seconds = time.perf_counter() - started
    return {"task": task_name, "search_s": seconds,
            "metrics": {t.name: shallow(RetrievalAccumulator(ks), query.targets[t.name],
                                        gallery.targets[t.name], ids, r_by_task[t.name]) for t in tasks}}


def example_grid(cfg: DictConfig, tasks: list[TaskSpec], gallery: SplitEmbeddings, query: SplitEmbeddings,
                 top_ids: np.ndarray, out: Path) -> Path:
    """retrieval_examples.png: evenly spaced queries with their top results (first task's labels)."""
    task = tasks[0]
    n_q = min(int(cfg.examples.num_queries), len(query))
    k = min(int(cfg.examples.k), top_ids.shape[1])
    rows = np.linspace(0, len(query) - 1, n_q).round().astype(int)
    ids = top_ids[rows, :k]
    correct = relevance(query.targets[task.name][rows], gallery.targets[task.name], ids)
    titles = [str(n) for n in label_names(task, query.targets[task.name][rows])]
    return plot_retrieval_examples(
        [int(query.index[r]) for r in rows], ids, correct, query.dataset.raw_image,
        lambda gid: gallery.dataset.raw_image(int(gallery.index[gid])), titles,
        out / "retrieval_examples.png")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole evaluation described by `conf/evaluate.yaml`; returns the report.

    The folder's files are written into a temporary sibling (`.<name>.partial-*`), which becomes
    the evaluation folder only once complete (see `publish`): an evaluation that fails or is
    killed part-way leaves no folder that looks like a finished one. The W&B run, if any, is
    finished whether the evaluation succeeds or raises."""
    exit_code = 1
    try:
        report = _evaluate(cfg)
        exit_code = 0
        return report
    finally:
        finish_wandb(exit_code)


def publish(staging: Path, out: Path) -> None:
    """Make the complete `staging` folder the evaluation folder `out`: Hydra's launch files
    already in `out` (`.hydra/`, the log, still open and written to) move into it first."""
    if out.is_dir():
        for entry in out.iterdir():
            entry.rename(staging / entry.name)
    os.replace(staging, out)  # replaces the now empty `out`


def _evaluate(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    secrets = config_secrets(cfg)
    scrub_files((out / ".hydra").glob("*.yaml"), secrets)  # Hydra saved the command line
    check_run_folder(out, kind="evaluation")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        report, figures, loaded, samples = write_evaluation(cfg, out, staging, started)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, out)
    settings = wandb_settings(cfg, loaded.cfg, training_wandb_info(loaded.path), out,
                              checkpoint_run_dir(loaded.path))
    if settings is not None:
        figure_files = {name: out / path.name for name, path in figures.items()}
        with masked_argv(secrets):  # the W&B run starts here and records the command line
            run = log_to_wandb(settings, out, report, loaded.tasks, figure_files, resolved_config(cfg))
        log_lineage_and_tables(run, cfg, out, report, loaded.path, samples)
    for line in headline(report):  # the console ends with the figures, then the folder
        log.info("%s", line)
    log.info("evaluation folder: %s", out)
    return report


def write_evaluation(cfg: DictConfig, out: Path, staging: Path, started: float,
                     ) -> tuple[dict[str, Any], dict[str, Path], LoadedCheckpoint, RetrievalSamples]:
    """Evaluate; write every file of the evaluation folder `out` into `staging`. Returns the
    report, the figures, the loaded checkpoint and the retrieval samples for W&B's tables."""
    device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    loaded = load_checkpoint(cfg.ckpt_path, map_location=device)
    tasks = loaded.tasks
    data_cfg = data_config(loaded, cfg.get("data"))
    datamodule = safe_instantiate(data_cfg, str(loaded.path), DATA, key="hyper_parameters.config.data",
                                  _recursive_=False)
    datamodule.setup()
    # The data's own protocol (query/gallery splits, Recall@k) where evaluate.py leaves them null.
    cfg = with_data_protocol(cfg, data_cfg)
    check_protocol(cfg, datamodule)
    now = datamodule.data_identity()
    if loaded.data_identity:
        now = datamodule.matches_recorded(loaded.data_identity)
        if now.get("fingerprint_kind") is None:
            log.warning("%s was written before data fingerprints hashed whole files: the data is "
                        "checked by each file's size and first and last 4 KiB, as it was then", loaded.path)
    data_check = check_data_identity(loaded.data_identity, now, loaded.path,
                                     allow_changed=bool((cfg.get("data") or {}).get("allow_changed")))
    fingerprint = data_check["data_fingerprint"]
    timings["load_s"] = time.perf_counter() - t
    log.info("checkpoint %s (sha256 %s), data fingerprint %s", loaded.path, loaded.sha256[:12],
             fingerprint[:12])

    splits: dict[str, SplitEmbeddings] = {}
    for split in dict.fromkeys([cfg.query, cfg.gallery, "test"]):
        splits[split] = SplitEmbeddings(loaded, datamodule, split, cfg.batch_size, cfg.progress,
                                        **(cfg.get("predict") or {}))
        timings[f"embed_{split}_s"] = splits[split].seconds
    gallery, query, test = splits[cfg.gallery], splits[cfg.query], splits["test"]

    classification = classification_report(tasks, test.probs, test.targets)

    t = time.perf_counter()
    index, info = build_index(gallery.embeddings, cfg.index)
    timings["index_build_s"] = time.perf_counter() - t
    exclude_self = (cfg.gallery == cfg.query) if cfg.retrieval.exclude_self == "auto" \
        else bool(cfg.retrieval.exclude_self)
    if exclude_self and cfg.gallery != cfg.query:
        raise ConfigError("retrieval.exclude_self=true needs gallery and query to be the same split")
    # Relevance from the data's retrieval labels (e.g. In-shop item ids) where it has them.
    r_tasks, r_gallery, r_query = retrieval_view(cfg, tasks, datamodule, gallery, query)
    retrieval, top_ids = retrieval_evaluation(cfg, r_tasks, r_gallery, r_query, index, info, exclude_self)
    retrieval.update(protocol_summary(cfg))
    timings.update(retrieval.pop("timings"))

    labels = datamodule.retrieval_tasks() if hasattr(datamodule, "retrieval_tasks") else []
    np.save(staging / EMBEDDINGS_FILE, gallery.embeddings)
    gallery_table(tasks, gallery, (labels, r_gallery)).to_parquet(staging / GALLERY_FILE, index=False)
    if cfg.query != cfg.gallery:
        np.save(staging / QUERY_EMBEDDINGS_FILE, query.embeddings)
        gallery_table(tasks, query, (labels, r_query)).to_parquet(staging / QUERIES_FILE, index=False)
    save_index(index, staging / INDEX_FILE)
    embedding = loaded.module.embedding_info()
    manifest = make_manifest(
        checkpoint=str(loaded.path), checkpoint_sha256=loaded.sha256, data_fingerprint=fingerprint,
        index=info, embedding_dim=gallery.embeddings.shape[1], gallery_split=cfg.gallery,
        query_split=cfg.query, num_items=len(gallery), tasks=tasks_to_config(tasks))
    manifest.update(training_data_fingerprint=data_check["training_data_fingerprint"],
                    data_changed=data_check["data_changed"])
    manifest["embedding"] = embedding
    manifest["data"] = masked_config({"data": OmegaConf.to_container(data_cfg, resolve=True)})["data"]
    write_manifest(staging, manifest)

    figures = {f"confusion_{t.name}": plot_confusion(
        classification[t.name]["confusion"], t.classes, f"test {t.name}", staging / f"confusion_{t.name}.png")
        for t in tasks if t.kind == "multiclass" and classification[t.name]["confusion"] is not None}
    figures["retrieval_examples"] = example_grid(cfg, r_tasks, r_gallery, r_query, top_ids, staging)

    timings["total_s"] = time.perf_counter() - started
    report = {
        "checkpoint": str(loaded.path), "checkpoint_sha256": loaded.sha256,
        **data_check, "backbone": str(loaded.cfg.backbone.name),
        "gallery_split": cfg.gallery, "query_split": cfg.query,
        "num_gallery": len(gallery), "num_query": len(query), "num_test": len(test),
        "embedding_dim": int(gallery.embeddings.shape[1]), "embedding": embedding, "index": info,
        "classification": classification, "retrieval": retrieval, "timings": timings,
        "device": device, "eval_dir": str(out), **git_info(cfg.paths.root_dir),
    }
    write_report_md(staging / "report.md", report, tasks)
    write_json(staging / "report.json", report)  # last: a folder with report.json is complete
    return report, figures, loaded, RetrievalSamples(r_tasks, r_gallery, r_query, top_ids)
