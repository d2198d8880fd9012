"""Balance step, configured by one `data.balance` block for every reader: rare classes (merged,
dropped, set unknown or kept), a cap per class (see `cap`), and the train sampler.

Older configs (in checkpoints written before) used `data.rare_classes` (Fashion Product Images),
`data.balance_styles` (CelebA) and `data.balance.max_count`; `balance_config` reads them as the
equivalent `data.balance` settings, so that old runs rebuild exactly the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from fashionlab.data.table.frame import AUTO, ImageTable
from fashionlab.errors import ConfigError

log = logging.getLogger(__name__)

RARE_ACTIONS = ("drop", "merge", "unknown", "keep")
RARE_ALIASES = {"other": "merge", "ignore": "unknown"}  # image_table's and fashion_products' names
RARE_TASKS = ("task", "all")
CAP_WHERE = ("train", "all")
SAMPLERS = ("none", "weighted")


@dataclass(frozen=True)
class BalanceConfig:
    """`data.balance`: see docs/data_tables.md."""

    task: str | None = None
    min_count: int = 0
    rare: str = "drop"
    rare_tasks: str = "task"
    other_class: str = "other"
    max_per_class: int | str | None = None
    cap: str = "train"
    unlabelled: int | float | None = None
    sampler: str = "none"

    def settings(self) -> dict[str, Any]:
        return asdict(self)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"data.{key}={value!r}; expected one of {', '.join(allowed)}")
    return str(value)


def balance_config(balance: Mapping[str, Any] | None, rare_classes: Mapping[str, Any] | None = None,
                   balance_styles: Mapping[str, Any] | None = None) -> BalanceConfig:
    """The checked `data.balance` block, with the older keys read into it."""
    options = dict(balance or {})
    known = [f.name for f in fields(BalanceConfig)]
    unknown = sorted(set(options) - {*known, "max_count"})
    if unknown:
        raise ConfigError(f"data.balance has unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(known)}")
    max_count = options.pop("max_count", None)
    if max_count is not None:
        if options.get("max_per_class") is not None:
            raise ConfigError("data.balance.max_count is the old name of data.balance.max_per_class; "
                              "set only max_per_class")
        options["max_per_class"] = max_count
    options = {k: v for k, v in options.items() if v is not None or k in ("task", "max_per_class",
                                                                          "unlabelled")}
    cfg = BalanceConfig(**options)
    cfg = _legacy_rare_classes(cfg, rare_classes)
    cfg = _legacy_balance_styles(cfg, balance_styles)
    rare = _choice("balance.rare", RARE_ALIASES.get(cfg.rare, cfg.rare), RARE_ACTIONS)
    _choice("balance.rare_tasks", cfg.rare_tasks, RARE_TASKS)
    _choice("balance.cap", cfg.cap, CAP_WHERE)
    _choice("balance.sampler", cfg.sampler, SAMPLERS)
    if not isinstance(cfg.min_count, int) or cfg.min_count < 0:
        raise ConfigError(f"data.balance.min_count={cfg.min_count!r}: expected a count >= 0")
    cap = cfg.max_per_class
    if cap is not None and cap != "min" and not (isinstance(cap, int) and cap >= 1):
        raise ConfigError(f"data.balance.max_per_class={cap!r}: expected a count >= 1, min or null")
    extra = cfg.unlabelled
    if extra is not None and not (isinstance(extra, int | float) and extra >= 0):
        raise ConfigError(f"data.balance.unlabelled={extra!r}: expected a count, a fraction or null")
    return replace(cfg, rare=rare)


def _legacy_rare_classes(cfg: BalanceConfig, old: Mapping[str, Any] | None) -> BalanceConfig:
    """fashion_products' `rare_classes: {min_count, action, other}` (every task, before the split)."""
    old = dict(old or {})
    min_count = int(old.get("min_count", 0) or 0)
    if min_count <= 1:
        return cfg
    action = old.get("action", "merge")
    if RARE_ALIASES.get(action, action) not in RARE_ACTIONS:
        raise ConfigError(f"data.rare_classes.action is {action!r}; expected one of merge, ignore, drop")
    if cfg.min_count:
        raise ConfigError("data.rare_classes (the old key) and data.balance.min_count are both set; "
                          "use data.balance only")
    log.info("data.rare_classes is read as data.balance (min_count=%d, rare=%s, rare_tasks=all)",
             min_count, action)
    return replace(cfg, min_count=min_count, rare=action, rare_tasks="all",
                   other_class=str(old.get("other", "other")))


def _legacy_balance_styles(cfg: BalanceConfig, old: Mapping[str, Any] | None) -> BalanceConfig:
    """celeba_style's `balance_styles: {max_per_style, unlabelled}` (all splits, before the split)."""
    if old is None:
        return cfg
    old = dict(old)
    unknown = sorted(set(old) - {"max_per_style", "unlabelled"})
    if unknown:
        raise ConfigError(f"data.balance_styles has unknown key(s) {', '.join(unknown)}; "
                          f"known: max_per_style, unlabelled")
    if cfg.max_per_class is not None or cfg.unlabelled is not None:
        raise ConfigError("data.balance_styles (the old key) and data.balance.max_per_class / "
                          "unlabelled are both set; use data.balance only")
    return replace(cfg, max_per_class=old.get("max_per_style", "min"),
                   unlabelled=old.get("unlabelled", 0), cap="all")


def resolve_task(cfg: BalanceConfig, tasks_cfg: Mapping[str, Mapping[str, Any]],
                 split_by: str | None, main_task: str | None) -> str | None:
    """The balanced task: `balance.task`, else split_by, else main_task, else the first
    multiclass task (else the only task). Checked against what the settings need."""
    task = cfg.task or split_by or main_task
    if task is None:
        task = next((n for n, e in tasks_cfg.items() if e["kind"] == "multiclass"), None)
    if task is None and len(tasks_cfg) == 1:
        task = next(iter(tasks_cfg))
    if task is None:
        return None
    if task not in tasks_cfg:
        raise ConfigError(f"data.balance.task={task!r} is not a task; tasks: {', '.join(tasks_cfg)}")
    if tasks_cfg[task]["kind"] != "multiclass":
        needs = [k for k, on in (("min_count", cfg.min_count and cfg.rare_tasks == "task"),
                                 ("sampler", cfg.sampler != "none")) if on]
        if needs:
            raise ConfigError(f"data.balance.{needs[0]} needs a multiclass task, but "
                              f"data.balance.task={task!r} is {tasks_cfg[task]['kind']}")
    return task


def rare_classes(frame: pd.DataFrame, column: str, min_count: int, action: str,
                 other: str = "other") -> tuple[pd.DataFrame, dict[str, int]]:
    """Handle classes of `column` with fewer than `min_count` labelled rows: merge (relabel
    `other`), unknown (label set unknown, the row keeps its other tasks), drop (remove the rows) or
    keep (report only). Returns the new frame and {class: count} of the rare classes."""
    action = RARE_ALIASES.get(action, action)
    _choice("balance.rare", action, RARE_ACTIONS)
    counts = frame[column].value_counts()
    rare = counts[counts < min_count]
    if rare.empty:
        return frame, {}
    frame = frame.copy()
    hit = frame[column].isin(rare.index)
    if action == "merge":
        frame.loc[hit, column] = other
    elif action == "unknown":
        frame.loc[hit, column] = None
    elif action == "drop":
        frame = frame[~hit]
    return frame, {str(k): int(v) for k, v in rare.items()}


def handle_rare(table: ImageTable, cfg: BalanceConfig, task: str | None
                ) -> tuple[ImageTable, dict[str, Any]]:
    """Rare classes of the balanced task (`rare_tasks: task`) or of every multiclass task read
    from the data, in order (`all`). Report: class counts before, the rare classes, rows dropped."""
    counts: dict[str, dict[str, int]] = {}
    rare: dict[str, dict[str, int]] = {}
    listed = len(table)
    if cfg.rare_tasks == "all":
        names = [t for t, e in table.tasks_cfg.items()
                 if e["kind"] == "multiclass" and t not in table.derived]
    else:
        names = [task] if task is not None and table.kind(task) == "multiclass" else []
    frame = table.frame
    for name in names:
        counts[name] = {str(c): int(n) for c, n in frame[name].value_counts(dropna=True).items()}
        if cfg.min_count <= 0:
            continue
        found = {c for c, n in counts[name].items() if n < cfg.min_count}
        if found and cfg.rare == "merge":
            _check_merge(table, name, cfg.other_class)
        frame, handled = rare_classes(frame, name, cfg.min_count, cfg.rare, cfg.other_class)
        if handled:
            rare[name] = handled
            log.info("%s: %d class(es) under %d images (rare=%s): %s", name, len(handled),
                     cfg.min_count, cfg.rare, ", ".join(f"{k}={v}" for k, v in handled.items()))
    if task is not None and task not in counts:
        counts[task] = class_counts(frame[task])
    table = table.with_frame(frame)
    return table, {"counts": counts, "rare": rare, "dropped": listed - len(table)}


def class_counts(labels: pd.Series) -> dict[str, int]:
    """Images per class of a label column (multilabel: each image counts for each of its classes)."""
    names = [c for v in labels if v is not None for c in ([v] if isinstance(v, str) else v)]
    return {str(c): int(n) for c, n in pd.Series(names, dtype=object).value_counts().items()}


def _check_merge(table: ImageTable, task: str, other: str) -> None:
    entry = table.tasks_cfg[task]
    if entry.get("parent"):
        raise ConfigError(
            f"data.balance.rare=merge cannot merge classes of task {task!r}, which has a parent "
            f"({entry['parent']}); use data.balance.rare=drop")
    if entry["classes"] != AUTO and other not in entry["classes"]:
        raise ConfigError(f"data.balance.rare=merge needs class {other!r} in data.tasks.{task}.classes")


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-row weights making each class equally likely; unknown rows get the mean weight."""
    counts = np.bincount(labels[labels >= 0], minlength=1).astype(np.float64)
    per_class = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    weights = np.where(labels >= 0, per_class[np.maximum(labels, 0)], 0.0)
    known = weights > 0
    if known.any():
        weights[~known] = weights[known].mean()
    else:
        weights[:] = 1.0
    return weights
