"""A data's own evaluation protocol: default query / gallery splits and Recall@k list declared by its
data config (`data.evaluation`), and retrieval labels that decide relevance instead of a task's
classes (e.g. DeepFashion In-shop's item ids, which the query and gallery items share but the
`item` head, trained on other items, does not know)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from fashionlab.errors import ConfigError
from fashionlab.tasks import TaskSpec

#: evaluate.py's splits when neither it nor the data config names them.
DEFAULT_SPLITS = {"gallery": "train", "query": "test"}


def with_data_protocol(cfg: DictConfig, data_cfg: Mapping[str, Any]) -> DictConfig:
    """A copy of the evaluation config with `gallery` / `query` / `retrieval.recall_at` left null
    taken from `data.evaluation` (else gallery=train, query=test, no extra Recall@k), and the
    Recall@k list added to `retrieval.ks`."""
    defaults = dict(data_cfg.get("evaluation") or {})
    unknown = sorted(set(defaults) - {"gallery", "query", "recall_at"})
    if unknown:
        raise ConfigError(f"data.evaluation has unknown key(s) {', '.join(unknown)}; "
                          f"known: gallery, query, recall_at")
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        for key, fallback in DEFAULT_SPLITS.items():
            if cfg.get(key) is None:
                cfg[key] = defaults.get(key) or fallback
        recall_at = cfg.retrieval.get("recall_at")
        if recall_at is None:
            recall_at = defaults.get("recall_at")
        recall_at = [] if recall_at is None else list(recall_at)
        bad = [k for k in recall_at if not isinstance(k, int) or isinstance(k, bool) or k < 1]
        if bad:
            raise ConfigError(f"retrieval.recall_at={recall_at}: expected a list of ks >= 1")
        cfg.retrieval.recall_at = sorted(set(recall_at))
        cfg.retrieval.ks = sorted({int(k) for k in cfg.retrieval.ks} | set(recall_at))
    return cfg


def check_protocol(cfg: DictConfig, datamodule: Any) -> None:
    """The query and gallery splits exist and the gallery holds at least max(recall_at) items."""
    for key in ("gallery", "query"):
        if cfg[key] not in datamodule.splits:
            raise ConfigError(f"{key}={cfg[key]!r}: expected one of {', '.join(datamodule.splits)}")
    recall_at = list(cfg.retrieval.recall_at)
    size = len(datamodule.splits[cfg.gallery])
    if recall_at and max(recall_at) > size:
        raise ConfigError(f"retrieval.recall_at={recall_at} asks for {max(recall_at)} results per query, "
                          f"but the gallery ({cfg.gallery}) holds {size} images; set e.g. "
                          f"retrieval.recall_at=[1,{min(10, size)}]")


def retrieval_view(cfg: DictConfig, tasks: list[TaskSpec], datamodule: Any, gallery: Any, query: Any
                   ) -> tuple[list[TaskSpec], Any, Any]:
    """(tasks, gallery, query) for the retrieval metrics: each retrieval label of the data replaces
    the task of its name (or comes first, when the model has no such task), the splits' targets
    of that name becoming the label's codes. Without retrieval labels: the inputs unchanged."""
    labels = datamodule.retrieval_tasks() if hasattr(datamodule, "retrieval_tasks") else []
    if not labels:
        return tasks, gallery, query
    names = {t.name for t in labels}
    if cfg.retrieval.get("within_label") in names:
        raise ConfigError(f"retrieval.within_label={cfg.retrieval.within_label!r} is this data's "
                          f"retrieval label, not a predicted class; name another task")
    by_name = {t.name: t for t in labels}
    view = [by_name.pop(t.name, t) for t in tasks]
    view = list(by_name.values()) + view

    def relabel(split: Any) -> Any:
        out = copy.copy(split)
        codes = split.dataset.retrieval_targets
        out.targets = {**split.targets, **{n: np.asarray(codes[n])[split.index] for n in names}}
        return out

    return view, relabel(gallery), relabel(query)


def protocol_summary(cfg: DictConfig) -> dict[str, Any]:
    """What report.json records about the protocol."""
    return {"recall_at": list(OmegaConf.to_container(cfg.retrieval.recall_at))}
