"""Report step: what the steps did, as `balance.json` / `balance.csv` (per class),
`skipped_images.csv` (bad files left out) and `read_report.json` (what the reader found)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionlab.data.datamodule import SPLITS
from fashionlab.data.table.balance import BalanceConfig
from fashionlab.fileio import write_json
from fashionlab.tasks import TaskSpec

log = logging.getLogger(__name__)

READ_REPORT = "read_report.json"


def _in_class(labels: np.ndarray, c: int) -> np.ndarray:
    return labels[:, c] > 0 if labels.ndim == 2 else labels == c


def balance_report(*, cfg: BalanceConfig, task: str | None, tasks: list[TaskSpec],
                   targets: dict[str, np.ndarray], split: np.ndarray, listed: int,
                   skipped: int, rare: Mapping[str, Any], capped: Mapping[str, int],
                   cap_all: Mapping[str, Any]) -> dict[str, Any]:
    """balance.json: settings, image counts at each step, and per class of the balanced task its
    images before balancing, per split after, images capped and rare status."""
    classes: dict[str, dict[str, Any]] = {}
    spec = next((t for t in tasks if t.name == task), None)
    before = dict(rare["counts"].get(task, {})) if task else {}
    if cap_all:
        before = {**before, **cap_all["positives_before"]}
        capped = {c: int(cap_all["positives_before"][c] - cap_all["positives_after"][c])
                  for c in cap_all["positives_before"]}
    if spec is not None:
        labels = targets[spec.name]
        for c, cls in enumerate(spec.classes):
            member = _in_class(labels, c)
            classes[cls] = {"images": int(before.get(cls, 0)),
                            **{s: int((member & (split == s)).sum()) for s in SPLITS},
                            "capped": int(capped.get(cls, 0))}
    action = {"drop": "dropped", "merge": f"merged into {cfg.other_class}",
              "unknown": "set unknown", "keep": "kept"}[cfg.rare]
    for cls, n in rare["rare"].get(task, {}).items():
        entry = classes.setdefault(cls, {"images": n, **dict.fromkeys(SPLITS, 0), "capped": 0})
        entry["rare"] = action
    removed = int(cap_all["images_before"] - cap_all["images_after"]) if cap_all else \
        int(sum(capped.values()))
    report = {
        "task": task,
        "settings": cfg.settings(),
        "images_listed": int(listed),
        "skipped_bad_images": int(skipped),
        "dropped_rare": int(rare["dropped"]),
        "capped": removed,
        "kept": {s: int((split == s).sum()) for s in (*SPLITS, *sorted(set(split) - set(SPLITS)))},
        "classes": classes,
        "rare_classes": dict(rare["rare"]),
    }
    if cap_all:
        report["cap"] = dict(cap_all)
    return report


def log_summary(name: str, report: Mapping[str, Any]) -> None:
    """One line: images listed, skipped, dropped as rare, capped, kept per split."""
    s = report["settings"]
    n_rare = sum(len(v) for v in report["rare_classes"].values())
    log.info(
        "%s: %d images listed, %d bad file(s) skipped, %d rare-class image(s) dropped "
        "(%d class(es) under min_count=%s, rare=%s), %d %simage(s) capped (max_per_class=%s); "
        "kept train=%d val=%d test=%d", name, report["images_listed"], report["skipped_bad_images"],
        report["dropped_rare"], n_rare, s["min_count"], s["rare"], report["capped"],
        "train " if s["cap"] == "train" else "", s["max_per_class"], report["kept"]["train"],
        report["kept"]["val"], report["kept"]["test"])


def write_reports(folder: str | Path, balance: Mapping[str, Any],
                  skipped: list[dict[str, str]], read: Mapping[str, Any] | None) -> None:
    """balance.json, balance.csv (one row per class), skipped_images.csv and, when the reader
    reported anything, read_report.json into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "balance.json", balance)
    rows = [{"class": c, **i} for c, i in balance["classes"].items()]
    pd.DataFrame(rows, columns=["class", "images", *SPLITS, "capped", "rare"]).to_csv(
        folder / "balance.csv", index=False)
    with open(folder / "skipped_images.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "source", "reason"])
        writer.writeheader()
        writer.writerows(skipped)
    if read:
        write_json(folder / READ_REPORT, dict(read))
