"""report.json, report.md and the W&B run of an evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from fashionlab.errors import ConfigError
from fashionlab.models.metrics import MAX_CONFUSION_CLASSES
from fashionlab.tasks import TaskSpec
from fashionlab.wandb_utils import stage_in_folder, wandb_confusion_chart


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table (DataFrame.to_markdown); floats with 4 decimals, "–" when not finite."""
    frame = pd.DataFrame([[_fmt(v) for v in row] for row in rows], columns=header)
    return frame.to_markdown(index=False, disable_numparse=True)


def data_check_lines(report: Mapping[str, Any]) -> list[str]:
    """report.md lines on whether the data was checked against the checkpoint's training data."""
    if report.get("data_changed"):
        return [f"- **Warning: the data differs from the training data** (fingerprint "
                f"`{str(report['training_data_fingerprint'])[:16]}…` trained, "
                f"`{report['data_fingerprint'][:16]}…` now), evaluated with `data.allow_changed=true`: "
                + "; ".join(report.get("data_differences", []))]
    if report.get("data_identity_checked") is False:
        return ["- Warning: the checkpoint stores no data identity; the data was not checked against "
                "its training data"]
    return []


def embedding_text(embedding: Mapping[str, Any] | None) -> str:
    """What report.md says about the indexed embedding (none in older reports)."""
    if not embedding:
        return ""
    if embedding.get("source") == "projection":
        return f" (projection head, {embedding.get('loss')} loss on `{embedding.get('task')}`)"
    return " (pooled backbone features)"


def headline(report: Mapping[str, Any]) -> list[str]:
    """The figures report.md leads with, as console lines: test accuracy and macro-F1 per task,
    then retrieval P@1, Recall@k and mAP@R per task."""
    cls, ret = report["classification"], report["retrieval"]
    lines = ["test classification: " + "; ".join(
        f"{task} acc {_fmt(m['acc'])}, macro-F1 {_fmt(m['f1_macro'])}" for task, m in cls.items())]
    ks = list(ret.get("ks", []))
    lines.append(
        f"retrieval (gallery {report['gallery_split']}, queries {report['query_split']}): " + "; ".join(
            f"{task} P@1 {_fmt(m['precision_at_1'])}, "
            + "".join(f"R@{k} {_fmt(m[f'recall_at_{k}'])}, " for k in ks if f"recall_at_{k}" in m)
            + f"mAP@R {_fmt(m['map_at_r'])}" for task, m in ret["metrics"].items()))
    return lines


def write_report_md(path: Path, report: Mapping[str, Any], tasks: list[TaskSpec]) -> None:
    """Human-readable tables of report.json."""
    cls, ret = report["classification"], report["retrieval"]
    parts = [
        "# Evaluation report", "",
        f"- checkpoint: `{report['checkpoint']}` (sha256 `{report['checkpoint_sha256'][:16]}…`)",
        f"- data fingerprint: `{report['data_fingerprint'][:16]}…`, backbone `{report['backbone']}`",
        *data_check_lines(report),
        f"- gallery: `{report['gallery_split']}` ({report['num_gallery']} items), query: "
        f"`{report['query_split']}` ({report['num_query']}), embedding dim {report['embedding_dim']}"
        + embedding_text(report.get("embedding")),
        f"- index: `{report['index']['type']}` (`{report['index']['factory']}`, "
        f"{json.dumps(report['index']['params'])})", "",
        "## Classification (test split)", "",
        markdown_table(["task", "accuracy", "macro-F1", "weighted-F1", "items"],
                       [[t.name, cls[t.name]["acc"], cls[t.name]["f1_macro"], cls[t.name]["f1_weighted"],
                         cls[t.name]["num_items"]] for t in tasks]),
    ]
    for task in tasks:
        table = cls[task.name]["per_class"]
        if task.num_classes > MAX_CONFUSION_CLASSES:  # e.g. thousands of item ids: report.json only
            parts += ["", f"### {task.name}: per class", "",
                      f"{task.num_classes} classes: the per-class table is in report.json"]
            continue
        parts += ["", f"### {task.name}: per class", "",
                  markdown_table(list(table.columns), table.values.tolist())]
    ks = ret["ks"]
    names = ["precision_at_1", *[f"recall_at_{k}" for k in ks], "map_at_r", "r_precision", "mrr"]
    parts += ["", f"## Retrieval (exact ranking, depth {ret['depth']}, exclude self: {ret['exclude_self']})",
              "", markdown_table(
                  ["task", "P@1", *[f"R@{k}" for k in ks], "mAP@R", "R-prec", "MRR", "queries"],
                  [[t, *[m[n] for n in names], m["num_queries"]] for t, m in ret["metrics"].items()])]
    if "index" in ret:
        idx = ret["index"]
        recall_key = next(k for k in idx if k.endswith("_vs_exact"))
        parts += ["", f"## Index `{report['index']['type']}`: {recall_key} = {_fmt(idx[recall_key])}", "",
                  markdown_table(["task", "P@1", *[f"R@{k}" for k in ks], "MRR"],
                                 [[t, m["precision_at_1"], *[m[f"recall_at_{k}"] for k in ks], m["mrr"]]
                                  for t, m in idx["metrics"].items()])]
    if "within_label" in ret:
        wl = ret["within_label"]
        parts += ["", f"## Search within predicted `{wl['task']}`", "",
                  markdown_table(["task", "P@1", *[f"R@{k}" for k in ks], "MRR"],
                                 [[t, m["precision_at_1"], *[m[f"recall_at_{k}"] for k in ks], m["mrr"]]
                                  for t, m in wl["metrics"].items()])]
    parts += ["", "## Timings (s)", "",
              markdown_table(["step", "value"], [[k, v] for k, v in report["timings"].items()]), ""]
    path.write_text("\n".join(parts))


def wandb_settings(cfg: DictConfig, train_cfg: DictConfig, training_run: Mapping[str, Any] | None = None,
                   out: Path | None = None, run_folder: Path | None = None) -> dict[str, Any] | None:
    """W&B settings of an evaluation: `wandb.log=auto` follows the training run (W&B or not, its
    project and offline/online mode); `true` forces it (offline unless training was online);
    `false` turns it off. None when nothing is to be logged.

    The run joins its training run's group and is named `<training run>-eval-<folder>`;
    `training_run` is the checkpoint's W&B record (`wandb_logging.training_wandb_info`: name,
    group), `run_folder` the checkpoint's run folder (the name of a run trained without W&B)."""
    choice = str(cfg.wandb.log).lower()
    train_logger = train_cfg.get("logger") or {}
    trained_with_wandb = "Wandb" in str(train_logger.get("_target_", ""))
    if choice not in ("auto", "true", "false"):
        raise ConfigError(f"wandb.log={cfg.wandb.log!r}; expected auto, true or false")
    if choice == "false" or (choice == "auto" and not trained_with_wandb):
        return None
    offline = cfg.wandb.offline
    if offline is None:
        offline = bool(train_logger.get("offline", True)) if trained_with_wandb else True
    training_run = training_run or {}
    trained_as = training_run.get("name") or (run_folder.name if run_folder else None)
    name = cfg.wandb.name or (f"{trained_as}-eval-{out.name}" if trained_as and out else None)
    return {"project": cfg.wandb.project or train_logger.get("project") or "fashionlab",
            "offline": bool(offline), "name": name,
            "group": cfg.wandb.get("group") or training_run.get("group") or trained_as}


def log_to_wandb(settings: Mapping[str, Any], out: Path, report: Mapping[str, Any], tasks: list[TaskSpec],
                 figures: Mapping[str, Path], config: Mapping[str, Any]) -> Any:
    """Start the evaluation's W&B run and log summary metrics, per-class and retrieval tables,
    confusion-matrix charts and the figures; returns the run (the caller finishes it:
    `fashionlab.wandb_utils.finish_wandb`)."""
    import wandb

    stage_in_folder(out)
    run = wandb.init(project=settings["project"], group=settings["group"], name=settings["name"],
                     job_type="evaluate", dir=str(out), mode="offline" if settings["offline"] else "online",
                     config={"evaluate": config, "checkpoint_sha256": report["checkpoint_sha256"],
                             "data_fingerprint": report["data_fingerprint"],
                             "training_data_fingerprint": report.get("training_data_fingerprint"),
                             "data_changed": report.get("data_changed")})
    summary: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for task in tasks:
        c = report["classification"][task.name]
        for key in ("acc", "f1_macro", "f1_weighted"):
            summary[f"eval/test/{task.name}/{key}"] = c[key]
        payload[f"eval/test/{task.name}/per_class"] = wandb.Table(dataframe=c["per_class"])
        if task.kind == "multiclass" and c["confusion"] is not None:
            payload[f"eval/test/{task.name}/confusion_matrix"] = wandb_confusion_chart(
                list(task.classes), c["confusion"], f"test {task.name} confusion matrix")
    retrieval = report["retrieval"]
    rows = []
    for task_name, metrics in retrieval["metrics"].items():
        rows.append([task_name, *[metrics[k] for k in metrics]])
        for key, value in metrics.items():
            summary[f"eval/retrieval/{task_name}/{key}"] = value
    payload["eval/retrieval/metrics"] = wandb.Table(
        columns=["task", *next(iter(retrieval["metrics"].values())).keys()], data=rows)
    if "index" in retrieval:
        for key, value in retrieval["index"].items():
            if isinstance(value, float):
                summary[f"eval/index/{key}"] = value
    for key, value in report["timings"].items():
        summary[f"eval/timings/{key}"] = value
    for name, path in figures.items():
        payload[f"eval/{name}"] = wandb.Image(str(path))
    run.log(payload)
    run.summary.update({k: v for k, v in summary.items()
                        if isinstance(v, int | float) and math.isfinite(v)})
    run.summary.update({"checkpoint_sha256": report["checkpoint_sha256"],
                        "index_type": report["index"]["type"]})
    return run
