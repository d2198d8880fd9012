"""File-backed datasets described by a table: one row per image file, one column per task.

A format subclass implements `read_table()`; this base turns the table into checked, balanced,
split, file-backed datasets. The table (a pandas DataFrame) has the columns

- `path`: the image file, absolute or relative to `root`;
- `split` (optional): "train" / "val" / "test" where the dataset has an official partition;
- one column per task: multiclass -> a class name (None = unknown, ignored by loss and metrics);
  multilabel -> a list of class names (None = unknown);
- optional `id` (stable item id; default: the row number) and `source` (where the row came
  from, e.g. "styles.csv:12", used in error messages; default: "row <n>").

Steps, in order: image checks (`on_bad_image`), rare classes (`balance.min_count`), classes
(`classes: auto` = sorted names found in the data; a child task's `parent_of: auto` = the parent
class each child class co-occurs with), split (official, or seeded and stratified by `split_by`),
cap of the train split (`balance.max_count`). Reports go to `report_dir`: `balance.json`,
`balance.csv` and `skipped_images.csv`.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from fashionlab.data.datamodule import SPLITS, MultiTaskDataModule
from fashionlab.data.file_dataset import FileImageDataset, relative_to
from fashionlab.data.images import check_images
from fashionlab.data.splits import stratified_split
from fashionlab.data.tables import is_missing
from fashionlab.errors import BadImageError, ConfigError, DataFormatError, DataNotFoundError
from fashionlab.tasks import IGNORE_INDEX, TASK_KINDS, TaskSpec, tasks_from_config

log = logging.getLogger(__name__)

AUTO = "auto"
ON_BAD_IMAGE = ("error", "skip")
CHECK_MODES = ("header", "full", "exists")
RARE_ACTIONS = ("drop", "other")
SAMPLERS = ("none", "weighted")
BALANCE_DEFAULTS: dict[str, Any] = {
    "task": None, "min_count": 0, "rare": "drop", "other_class": "other", "max_count": None,
    "sampler": "none",
}


def _objects(values: list[Any], table: pd.DataFrame) -> pd.Series:
    """A column of Python objects (None stays None: no NaN, no string dtype inference)."""
    return pd.Series(values, index=table.index, dtype=object)


def _size(value: int | float, n: int, key: str) -> int:
    """A split size given as a count or a fraction of `n`."""
    if isinstance(value, float) and 0 <= value < 1:
        return round(value * n)
    if isinstance(value, int | float) and value >= 0 and float(value).is_integer():
        return int(value)
    raise ConfigError(f"{key}={value!r}: expected a count (int >= 0) or a fraction in [0, 1)")


def _holdout(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held) positions; a stratified split, or nothing held out when size is 0."""
    if size <= 0:
        return np.arange(len(labels)), np.array([], dtype=np.int64)
    if size >= len(labels):
        raise ConfigError(f"a holdout of {size} leaves no training images out of {len(labels)}")
    return stratified_split(labels, size, seed)


class ImageTableDataModule(MultiTaskDataModule):
    """Base of the file-based formats: a subclass implements `read_table()` (see module doc)."""

    tasks_from_data = True

    def __init__(
        self,
        root: str | None,
        split_by: str | None = None,
        val_size: int | float = 0.1,
        test_size: int | float = 0.1,
        balance: Mapping[str, Any] | None = None,
        on_bad_image: str = "error",
        check_images: str = "header",
        check_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_bad_image not in ON_BAD_IMAGE:
            raise ConfigError(f"data.on_bad_image={on_bad_image!r}; expected one of "
                              f"{', '.join(ON_BAD_IMAGE)}")
        if check_images not in CHECK_MODES:
            raise ConfigError(f"data.check_images={check_images!r}; expected one of "
                              f"{', '.join(CHECK_MODES)}")
        unknown = sorted(set(balance or {}) - set(BALANCE_DEFAULTS))
        if unknown:
            raise ConfigError(f"data.balance has unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(BALANCE_DEFAULTS)}")
        self.balance = {**BALANCE_DEFAULTS, **dict(balance or {})}
        if self.balance["rare"] not in RARE_ACTIONS:
            raise ConfigError(f"data.balance.rare={self.balance['rare']!r}; expected one of "
                              f"{', '.join(RARE_ACTIONS)}")
        if self.balance["sampler"] not in SAMPLERS:
            raise ConfigError(f"data.balance.sampler={self.balance['sampler']!r}; expected one of "
                              f"{', '.join(SAMPLERS)}")
        for name, entry in self.tasks_cfg.items():
            if entry is None or entry.get("kind") not in TASK_KINDS or "classes" not in entry:
                raise ConfigError(f"data.tasks.{name} needs 'kind' ({' or '.join(TASK_KINDS)}) "
                                  f"and 'classes' (a list, or auto)")
        self.root = Path(root) if root else None
        self.split_by = split_by
        self.val_size = val_size
        self.test_size = test_size
        self.on_bad_image = on_bad_image
        self.check_mode = check_images
        self.check_workers = check_workers
        self._prepared: dict[str, Any] | None = None
        self._reports_written = False

    # ---- to implement -------------------------------------------------------------------
    def read_table(self) -> pd.DataFrame:
        """The dataset as a table (columns: see the module docstring)."""
        raise NotImplementedError

    # ---- helpers for subclasses ---------------------------------------------------------
    def require_root(self) -> Path:
        """`root` as an existing folder, or an error naming data.root."""
        if self.root is None:
            raise ConfigError(f"data.root is not set: pass data.root=<folder> for "
                              f"{type(self).__name__}")
        if not self.root.is_dir():
            raise DataNotFoundError(f"data.root={self.root}: folder not found")
        return self.root

    # ---- pipeline -----------------------------------------------------------------------
    def resolve_tasks(self) -> list[TaskSpec]:
        return self.prepare_table()["tasks"]

    def prepare_table(self) -> dict[str, Any]:
        """Read, check, balance, resolve classes and split (once); the results, by name."""
        if self._prepared is None:
            self._prepared = self._prepare()
        return self._prepared

    def _prepare(self) -> dict[str, Any]:
        root = self.require_root()
        table = self.read_table().reset_index(drop=True)
        name = type(self).__name__
        if "path" not in table.columns:
            raise DataFormatError(f"{name}.read_table() returned no 'path' column")
        if "source" not in table.columns:
            table["source"] = [f"row {i}" for i in range(len(table))]
        if "id" not in table.columns:
            table["id"] = np.arange(len(table))
        for i in np.flatnonzero(table["path"].map(is_missing).to_numpy()):
            raise DataFormatError(f"{table.at[i, 'source']}: no image path")
        table = self._derive_missing_columns(table)
        table = self._normalise_labels(table)
        if table.empty:
            raise DataFormatError(f"{name}: no images found under {root}")
        listed = len(table)
        table["abs_path"] = [str(p if Path(p).is_absolute() else root / p) for p in table["path"]]
        table["rel_path"] = [relative_to(p, root) for p in table["abs_path"]]

        self._check_known_classes(table)
        table, skipped = self._check_files(table)
        balance_task = self._balance_task()
        table, rare_report = self._apply_min_count(table, balance_task)
        tasks = self._resolve_classes(table)
        targets = self._encode(table, tasks)
        split_of = self._assign_splits(table, tasks, targets)
        split_of, capped = self._apply_max_count(split_of, tasks, targets, balance_task)

        keep = split_of != ""
        prepared = {
            "listed": listed,
            "tasks": tasks,
            "table": table[keep].reset_index(drop=True),
            "targets": {t: v[keep] for t, v in targets.items()},
            "split": split_of[keep],
            "skipped": skipped,
            "balance_task": balance_task,
            "rare": rare_report,
            "capped": capped,
        }
        prepared["report"] = self._balance_report(prepared)
        self._log_summary(prepared)
        return prepared

    def _derive_missing_columns(self, table: pd.DataFrame) -> pd.DataFrame:
        """A parent task without a column takes its labels from a child's explicit parent_of."""
        for task_name in self.tasks_cfg:
            if task_name in table.columns:
                continue
            child = next(
                (c for c, e in self.tasks_cfg.items()
                 if e.get("parent") == task_name and c in table.columns
                 and isinstance(e.get("parent_of"), Mapping)), None)
            if child is None:
                raise DataFormatError(
                    f"{type(self).__name__}: the data has no labels for task {task_name!r} "
                    f"(data.tasks.{task_name}); it provides: "
                    f"{', '.join(c for c in table.columns if c in self.tasks_cfg) or 'none'}")
            mapping = {str(k): str(v) for k, v in self.tasks_cfg[child]["parent_of"].items()}
            table[task_name] = _objects(
                [None if is_missing(v) else mapping.get(str(v)) for v in table[child]], table)
        return table

    def _normalise_labels(self, table: pd.DataFrame) -> pd.DataFrame:
        for task_name, entry in self.tasks_cfg.items():
            values = table[task_name].tolist()
            if entry["kind"] == "multiclass":
                table[task_name] = _objects(
                    [None if is_missing(v) else str(v).strip() for v in values], table)
            else:
                out = []
                for v in values:
                    if isinstance(v, list | tuple | set | np.ndarray):
                        out.append(sorted({str(x).strip() for x in v if not is_missing(x)}))
                    else:
                        out.append(None if is_missing(v) else [str(v).strip()])
                table[task_name] = _objects(out, table)
        return table

    def _check_files(self, table: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, str]]]:
        paths = table["abs_path"].tolist()
        if self.check_mode == "exists":
            infos, errors = [], []
            for p in paths:
                try:
                    infos.append(str(Path(p).stat().st_size))
                    errors.append(None)
                except OSError:
                    infos.append(None)
                    errors.append(BadImageError(p, "file not found"))
        else:
            checked, errors = check_images(paths, full=self.check_mode == "full",
                                           workers=self.check_workers)
            infos = [f"{i.size}:{i.quick_hash}" if i else None for i in checked]
        bad = [i for i, e in enumerate(errors) if e is not None]
        skipped = [{"path": table.at[i, "rel_path"], "source": table.at[i, "source"],
                    "reason": errors[i].reason} for i in bad]
        if bad and self.on_bad_image == "error":
            first = bad[0]
            more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
            raise BadImageError(
                errors[first].path,
                f"{errors[first].reason} [{table.at[first, 'source']}]{more}; "
                f"data.on_bad_image=skip leaves bad files out and lists them in skipped_images.csv")
        if bad:
            log.warning("skipped %d bad image file(s) of %d (data.on_bad_image=skip), e.g. %s: %s",
                        len(bad), len(table), skipped[0]["path"], skipped[0]["reason"])
        table["file_key"] = infos
        good = np.array([e is None for e in errors], dtype=bool)
        return table[good].reset_index(drop=True), skipped

    def _balance_task(self) -> str | None:
        task = self.balance["task"] or self.split_by or self.main_task
        if task is None:
            task = next((n for n, e in self.tasks_cfg.items() if e["kind"] == "multiclass"), None)
        if task is not None and task not in self.tasks_cfg:
            raise ConfigError(f"data.balance.task={task!r} is not a task; tasks: "
                              f"{', '.join(self.tasks_cfg)}")
        if task is not None and self.tasks_cfg[task]["kind"] != "multiclass":
            if self.balance["min_count"] or self.balance["max_count"] or \
                    self.balance["sampler"] != "none":
                raise ConfigError(f"data.balance.task={task!r} must be a multiclass task")
            return None
        return task

    def _apply_min_count(self, table: pd.DataFrame, task: str | None
                         ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
        min_count = int(self.balance["min_count"] or 0)
        report: dict[str, dict[str, Any]] = {}
        if task is None:
            return table, report
        counts = table[task].value_counts(dropna=True)
        for cls, n in counts.items():
            report[str(cls)] = {"images": int(n), "rare": bool(n < min_count)}
        rare = {str(c) for c, n in counts.items() if n < min_count}
        if not rare:
            return table, report
        is_rare = table[task].isin(rare).to_numpy()
        if self.balance["rare"] == "drop":
            table = table[~is_rare].reset_index(drop=True)
        else:
            entry = self.tasks_cfg[task]
            if entry.get("parent"):
                raise ConfigError(
                    f"data.balance.rare=other cannot merge classes of task {task!r}, which has a "
                    f"parent ({entry['parent']}); use data.balance.rare=drop")
            other = str(self.balance["other_class"])
            if entry["classes"] != AUTO and other not in entry["classes"]:
                raise ConfigError(f"data.balance.rare=other needs class {other!r} in "
                                  f"data.tasks.{task}.classes")
            table = table.copy()
            table.loc[is_rare, task] = other
        return table, report

    def _check_known_classes(self, table: pd.DataFrame) -> None:
        """Labels of tasks with a class list must be in it (before the slower file checks)."""
        for task_name, entry in self.tasks_cfg.items():
            if entry["classes"] == AUTO:
                continue
            known = {str(c) for c in entry["classes"]}
            if self.balance["rare"] == "other" and task_name == self._balance_task():
                known.add(str(self.balance["other_class"]))
            for i, v in enumerate(table[task_name]):
                names = [v] if entry["kind"] == "multiclass" else (v or [])
                for cls in names:
                    if cls is not None and cls not in known:
                        raise DataFormatError(
                            f"{table.at[i, 'source']}: unknown class {cls!r} for task "
                            f"{task_name!r}; data.tasks.{task_name}.classes lists "
                            f"{', '.join(sorted(known))}")

    def _resolve_classes(self, table: pd.DataFrame) -> list[TaskSpec]:
        resolved: dict[str, dict[str, Any]] = {}
        for task_name, entry in self.tasks_cfg.items():
            entry = dict(entry)
            values = table[task_name]
            if entry["kind"] == "multiclass":
                found = {v for v in values if v is not None}
            else:
                found = {c for v in values if v is not None for c in v}
            if entry["classes"] == AUTO:
                if not found:
                    log.warning("task %r has no labels in this data and is left out", task_name)
                    continue
                entry["classes"] = sorted(found)
            resolved[task_name] = entry
        for task_name, entry in resolved.items():
            parent = entry.get("parent")
            if parent and parent not in resolved:
                raise ConfigError(f"data.tasks.{task_name}.parent names {parent!r}, which has no "
                                  f"labels in this data")
            if parent and entry.get("parent_of") == AUTO:
                entry["parent_of"] = self._infer_parent_of(table, task_name, parent)
        return tasks_from_config(resolved)

    @staticmethod
    def _infer_parent_of(table: pd.DataFrame, child: str, parent: str) -> dict[str, str]:
        mapping: dict[str, str] = {}
        where: dict[str, str] = {}
        for c, p, src in zip(table[child], table[parent], table["source"], strict=True):
            if c is None or p is None:
                continue
            if mapping.setdefault(c, p) != p:
                raise DataFormatError(
                    f"{src}: class {c!r} of task {child!r} has parent {p!r}, but {where[c]} gives "
                    f"it parent {mapping[c]!r}; a child class needs one parent")
            where.setdefault(c, src)
        return mapping

    @staticmethod
    def _encode(table: pd.DataFrame, tasks: list[TaskSpec]) -> dict[str, np.ndarray]:
        targets: dict[str, np.ndarray] = {}
        for task in tasks:
            index = {c: i for i, c in enumerate(task.classes)}
            values = table[task.name].tolist()
            if task.kind == "multiclass":
                targets[task.name] = np.array(
                    [IGNORE_INDEX if v is None else index[v] for v in values], dtype=np.int64)
            else:
                hot = np.zeros((len(values), task.num_classes), dtype=np.float32)
                for i, v in enumerate(values):
                    if v is None:
                        hot[i] = IGNORE_INDEX
                    else:
                        hot[i, [index[c] for c in v]] = 1.0
                targets[task.name] = hot
        return targets

    def _split_labels(self, tasks: list[TaskSpec], targets: dict[str, np.ndarray]) -> np.ndarray:
        by_name = {t.name: t for t in tasks}
        name = self.split_by or self.main_task
        if name is None:
            name = next((t.name for t in tasks if t.kind == "multiclass"), None)
        if name is None:
            return np.zeros(len(next(iter(targets.values()))), dtype=np.int64)
        if name not in by_name or by_name[name].kind != "multiclass":
            raise ConfigError(f"data.split_by={name!r} must name a multiclass task; tasks: "
                              f"{', '.join(by_name)}")
        return targets[name]

    def _assign_splits(self, table: pd.DataFrame, tasks: list[TaskSpec],
                       targets: dict[str, np.ndarray]) -> np.ndarray:
        n = len(table)
        has_official = "split" in table.columns and table["split"].map(
            lambda v: not is_missing(v)).any()
        if not has_official:
            labels = self._split_labels(tasks, targets)
            split_of = np.full(n, "train", dtype=object)
            n_test = _size(self.test_size, n, "data.test_size")
            n_val = _size(self.val_size, n, "data.val_size")
            rest, test = _holdout(labels, n_test, self.seed)
            split_of[test] = "test"
            _, val = _holdout(labels[rest], n_val, self.seed + 1)
            split_of[rest[val]] = "val"
            return split_of
        split_of = np.empty(n, dtype=object)
        for i, v in enumerate(table["split"]):
            if is_missing(v) or str(v).strip() not in SPLITS:
                raise DataFormatError(f"{table.at[i, 'source']}: split is {v!r}; expected one of "
                                      f"{', '.join(SPLITS)} (the data has an official partition)")
            split_of[i] = str(v).strip()
        if not (split_of == "train").any():
            raise DataFormatError(f"{type(self).__name__}: the official partition has no train "
                                  f"images")
        for split, size, key, offset in (("test", self.test_size, "data.test_size", 0),
                                         ("val", self.val_size, "data.val_size", 1)):
            if (split_of == split).any():
                continue
            train = np.flatnonzero(split_of == "train")
            count = _size(size, len(train), key)
            _, held = _holdout(self._split_labels(tasks, targets)[train], count, self.seed + offset)
            split_of[train[held]] = split
            log.info("no official %s split: %d images carved from train (%s)", split, len(held), key)
        return split_of

    def _apply_max_count(self, split_of: np.ndarray, tasks: list[TaskSpec],
                         targets: dict[str, np.ndarray], task: str | None
                         ) -> tuple[np.ndarray, dict[str, int]]:
        max_count = self.balance["max_count"]
        capped: dict[str, int] = {}
        if task is None or max_count is None or task not in targets:
            return split_of, capped
        spec = next(t for t in tasks if t.name == task)
        rng = np.random.default_rng(self.seed + 2)
        split_of = split_of.copy()
        labels = targets[task]
        for c, cls in enumerate(spec.classes):
            rows = np.flatnonzero((split_of == "train") & (labels == c))
            if len(rows) > int(max_count):
                drop = rng.choice(rows, size=len(rows) - int(max_count), replace=False)
                split_of[drop] = ""
                capped[cls] = len(drop)
        return split_of, capped

    # ---- reports ------------------------------------------------------------------------
    def _balance_report(self, prepared: dict[str, Any]) -> dict[str, Any]:
        task = prepared["balance_task"]
        classes: dict[str, dict[str, Any]] = {}
        if task is not None and any(t.name == task for t in prepared["tasks"]):
            spec = next(t for t in prepared["tasks"] if t.name == task)
            labels, split = prepared["targets"][task], prepared["split"]
            for c, cls in enumerate(spec.classes):
                before = prepared["rare"].get(cls, {}).get("images", 0)
                classes[cls] = {"images": int(before),
                                **{s: int(((labels == c) & (split == s)).sum()) for s in SPLITS},
                                "capped": int(prepared["capped"].get(cls, 0))}
            action = self.balance["rare"]
            for cls, info in prepared["rare"].items():
                if info["rare"]:
                    entry = classes.setdefault(cls, {"images": info["images"],
                                                     **dict.fromkeys(SPLITS, 0), "capped": 0})
                    entry["rare"] = "dropped" if action == "drop" else \
                        f"merged into {self.balance['other_class']}"
        return {
            "task": task,
            "settings": {k: self.balance[k] for k in ("min_count", "rare", "other_class",
                                                      "max_count", "sampler")},
            "images_listed": int(prepared["listed"]),
            "skipped_bad_images": len(prepared["skipped"]),
            "dropped_rare": self._dropped_rare(prepared),
            "capped": int(sum(prepared["capped"].values())),
            "kept": {s: int((prepared["split"] == s).sum()) for s in SPLITS},
            "classes": classes,
        }

    def _dropped_rare(self, prepared: dict[str, Any]) -> int:
        if self.balance["rare"] != "drop":
            return 0
        return int(sum(i["images"] for i in prepared["rare"].values() if i["rare"]))

    def _log_summary(self, prepared: dict[str, Any]) -> None:
        r = prepared["report"]
        rare = [c for c, i in prepared["rare"].items() if i["rare"]]
        log.info(
            "%s: %d images listed, %d bad file(s) skipped, %d rare-class image(s) dropped "
            "(%d class(es) under min_count=%s, rare=%s), %d train image(s) capped (max_count=%s); "
            "kept train=%d val=%d test=%d", type(self).__name__, r["images_listed"],
            r["skipped_bad_images"], r["dropped_rare"], len(rare), self.balance["min_count"],
            self.balance["rare"], r["capped"], self.balance["max_count"], r["kept"]["train"],
            r["kept"]["val"], r["kept"]["test"])

    def write_reports(self, folder: str | Path) -> None:
        """balance.json, balance.csv (one row per class) and skipped_images.csv into `folder`."""
        prepared = self.prepare_table()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        report = prepared["report"]
        (folder / "balance.json").write_text(json.dumps(report, indent=2) + "\n")
        rows = [{"class": c, **i} for c, i in report["classes"].items()]
        pd.DataFrame(rows, columns=["class", "images", *SPLITS, "capped", "rare"]).to_csv(
            folder / "balance.csv", index=False)
        with open(folder / "skipped_images.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "source", "reason"])
            writer.writeheader()
            writer.writerows(prepared["skipped"])

    # ---- datasets -----------------------------------------------------------------------
    def build_datasets(self, train_tf: Any, eval_tf: Any) -> dict[str, Dataset]:
        prepared = self.prepare_table()
        table, split = prepared["table"], prepared["split"]
        datasets: dict[str, Dataset] = {}
        for name in SPLITS:
            rows = np.flatnonzero(split == name)
            part = table.iloc[rows]
            ds = FileImageDataset(
                part["abs_path"].tolist(),
                {t: v[rows] for t, v in prepared["targets"].items()},
                train_tf if name == "train" else eval_tf,
                ids=part["id"].tolist(),
                rel_paths=part["rel_path"].tolist(),
            )
            ds.file_keys = part["file_key"].tolist()
            datasets[name] = ds
        if self.report_dir and not self._reports_written and rank_zero_only.rank == 0:
            self.write_reports(self.report_dir)
            self._reports_written = True
        return datasets

    def train_sampler(self) -> Sampler | None:
        if self.balance["sampler"] != "weighted":
            return None
        task = self.prepare_table()["balance_task"]
        labels = self.splits["train"].targets[task]
        counts = np.bincount(labels[labels >= 0], minlength=1).astype(np.float64)
        per_class = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
        weights = np.where(labels >= 0, per_class[np.maximum(labels, 0)], 0.0)
        known = weights > 0
        if known.any():
            weights[~known] = weights[known].mean()
        else:
            weights[:] = 1.0
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                     num_samples=len(labels), replacement=True,
                                     generator=generator)

    def fingerprint_items(self, digest: Any, dataset: Dataset) -> None:
        """Relative path, size and quick hash (first/last 4 KiB) of every file of the split."""
        for rel, key in zip(dataset.rel_paths, dataset.file_keys, strict=True):
            digest.update(f"{rel}\t{key}\n".encode())

    def split_items(self, split: str) -> list[Any]:
        """The split's files, relative to data.root (so an identical copy elsewhere matches)."""
        return list(self.splits[split].rel_paths)

    def data_stats(self) -> dict[str, Any]:
        stats = super().data_stats()
        report = self.prepare_table()["report"]
        stats.update(data_skipped_images=report["skipped_bad_images"],
                     data_dropped_rare=report["dropped_rare"], data_capped=report["capped"])
        return stats
