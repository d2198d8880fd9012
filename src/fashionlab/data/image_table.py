"""File-backed datasets described by a table: one row per image file, one column per task.

A format subclass implements `read_table()`; this base runs the steps of `fashionlab.data.table`
on it. The table (a pandas DataFrame) has the columns

- `path`: the image file, absolute or relative to `root`;
- `split` (optional): "train" / "val" / "test" where the dataset has an official partition;
- one column per task: multiclass -> a class name (None = unknown, ignored by loss and metrics);
  multilabel -> a list of class names (None = unknown);
- optional `id` (stable item id; default: the row number) and `source` (where the row came
  from, e.g. "styles.csv:12", used in error messages; default: "row <n>").

Steps, in order: read (defaults, derived parents, labels), check (each image listed once),
balance rare classes (`balance.min_count`), check labels against class lists, cap before the
split (`balance.cap: all`), check files (`on_bad_image`), classes (`auto` = found in the data),
split (official, or seeded and stratified by `split_by`), cap of the train split
(`balance.cap: train`). Reports go to `report_dir` (see `table.report`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from fashionlab.data.cache.build import CacheRecord, CacheSettings
from fashionlab.data.cache.integrity import split_hashes
from fashionlab.data.cache.prepare import positions_after_drops, prepare_cache
from fashionlab.data.datamodule import SPLITS, MultiTaskDataModule
from fashionlab.data.file_dataset import FileImageDataset
from fashionlab.data.table import balance as balancing
from fashionlab.data.table import cap, check, classes, read, report, split
from fashionlab.data.table.frame import (
    ABS_PATH,
    BOX,
    FILE_KEY,
    ID,
    LEGACY_FILE_KEY,
    REL_PATH,
    SOURCE,
    PreparedTable,
)
from fashionlab.errors import ConfigError, DataNotFoundError
from fashionlab.tasks import TASK_KINDS, TaskSpec

log = logging.getLogger(__name__)


class ImageTableDataModule(MultiTaskDataModule):
    """Base of the file-based formats: a subclass implements `read_table()` (see module doc) and
    may fill `read_report` (written to read_report.json) and `class_order`."""

    tasks_from_data = True
    #: {retrieval label: table column}: labels that decide which gallery images are relevant to a
    #: query in evaluation (e.g. an item id), kept for every image whether or not a task uses them.
    retrieval_label_columns: ClassVar[Mapping[str, str]] = {}
    #: A class of the split task that cannot be in every split is an error (else a warning).
    strict_class_splits: ClassVar[bool] = False

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
        rare_classes: Mapping[str, Any] | None = None,
        balance_styles: Mapping[str, Any] | None = None,
        cache: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """`rare_classes` / `balance_styles`: the older keys of fashion_products / celeba_style
        (checkpoints written before), read as `balance`. `cache`: the prepared cache
        (`data.cache`, off without a `dir`; see fashionlab.data.cache)."""
        super().__init__(**kwargs)
        if on_bad_image not in check.ON_BAD_IMAGE:
            raise ConfigError(f"data.on_bad_image={on_bad_image!r}; expected one of "
                              f"{', '.join(check.ON_BAD_IMAGE)}")
        if check_images not in check.CHECK_MODES:
            raise ConfigError(f"data.check_images={check_images!r}; expected one of "
                              f"{', '.join(check.CHECK_MODES)}")
        self.balance = balancing.balance_config(balance, rare_classes, balance_styles)
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
        #: What the reader found (rows recovered, files missing, ...), for read_report.json.
        self.read_report: dict[str, Any] = {}
        #: Class order the reader knows per task, used where classes are auto (e.g. caps).
        self.class_order: dict[str, list[str]] = {}
        self._prepared: PreparedTable | None = None
        self._reports_written = False
        self.cache_settings = CacheSettings.from_config(cache)
        #: The cache read by the loaders (set up by `setup()` when data.cache.dir is set).
        self.cache_record: CacheRecord | None = None
        if self.cache_settings.enabled and self.balance.sampler == "weighted":
            raise ConfigError("data.balance.sampler=weighted does not work with data.cache.dir "
                              "(the cache streams each epoch's items once); leave one of them out")

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

    def describe_class(self, name: str) -> str:
        """How an error names a class of the split task (a reader may name its folder)."""
        return f"class {name!r}"

    # ---- pipeline -----------------------------------------------------------------------
    def resolve_tasks(self) -> list[TaskSpec]:
        return self.prepare_table().tasks

    def prepare_table(self) -> PreparedTable:
        """Run the steps (once) and keep their result."""
        if self._prepared is None:
            self._prepared = self._prepare()
        return self._prepared

    def balance_task(self) -> str | None:
        """The task the balance settings apply to."""
        return balancing.resolve_task(self.balance, self.tasks_cfg, self.split_by, self.main_task)

    def _prepare(self) -> PreparedTable:
        root = self.require_root()
        name = type(self).__name__
        table = read.as_table(self.read_table(), root, name, self.tasks_cfg, self.class_order)
        listed = len(table)
        check.check_unique_paths(table)
        task = self.balance_task()
        table, rare = balancing.handle_rare(table, self.balance, task)
        check.check_known_classes(table)
        table, cap_all = cap.cap_before_split(table, self.balance, task, self.seed)
        table, skipped = check.check_files(table, self.check_mode, self.on_bad_image,
                                           self.check_workers)
        tasks = classes.resolve_classes(table)
        targets = classes.encode(table, tasks)
        split_of = split.assign_splits(table, tasks, targets, self.split_by or self.main_task,
                                       self.val_size, self.test_size, self.seed, self.extra_splits)
        split_of, capped = cap.cap_train(split_of, tasks, targets, self.balance, task, self.seed)
        if not table.has_official_split(complete=True):
            # strict for classes found in the user's folders, not for listed or imposed ones (a
            # checkpoint's, evaluated on other data)
            split_task = self.split_by or self.main_task
            found = (self.tasks_cfg.get(split_task) or {}).get("classes") == classes.AUTO
            split.check_classes_in_splits(tasks, targets, split_of, split_task, self.describe_class,
                                          strict=self.strict_class_splits and found
                                          and self._tasks is None)
        keep = split_of != ""
        targets = {t: v[keep] for t, v in targets.items()}
        summary = report.balance_report(
            cfg=self.balance, task=task, tasks=tasks, targets=targets, split=split_of[keep],
            listed=listed, skipped=len(skipped), rare=rare, capped=capped, cap_all=cap_all)
        report.log_summary(name, summary)
        return PreparedTable(tasks=tasks, frame=table.frame[keep].reset_index(drop=True),
                             targets=targets, split=split_of[keep], listed=listed,
                             skipped=skipped, balance=summary)

    def write_reports(self, folder: str | Path) -> None:
        """balance.json, balance.csv, skipped_images.csv and read_report.json into `folder`."""
        prepared = self.prepare_table()
        report.write_reports(folder, prepared.balance, prepared.skipped, self.read_report)

    # ---- datasets -----------------------------------------------------------------------
    def build_datasets(self, train_tf: Any, eval_tf: Any) -> dict[str, Dataset]:
        datasets = self._table_datasets(train_tf, eval_tf)
        if self.cache_settings.enabled and self.cache_record is None:
            self.cache_record = self._prepare_cache(datasets)
            if self.cache_record.bad_images:
                self._leave_out(self.cache_record.bad_images)
                datasets = self._table_datasets(train_tf, eval_tf)
        if self.report_dir and not self._reports_written and rank_zero_only.rank == 0:
            self.write_reports(self.report_dir)
            self._reports_written = True
        return datasets

    def _table_datasets(self, train_tf: Any, eval_tf: Any) -> dict[str, Dataset]:
        prepared = self.prepare_table()
        datasets: dict[str, Dataset] = {}
        labels = self.retrieval_labels()
        for name in (*SPLITS, *self.extra_splits):
            rows = np.flatnonzero(prepared.split == name)
            part = prepared.frame.iloc[rows]
            ds = FileImageDataset(
                part[ABS_PATH].tolist(),
                {t: v[rows] for t, v in prepared.targets.items()},
                train_tf if name == "train" else eval_tf,
                ids=part[ID].tolist(),
                rel_paths=part[REL_PATH].tolist(),
                boxes=part[BOX].tolist() if BOX in part.columns else None,
                min_side=self.preprocess.decode_min_side if self.preprocess is not None else None,
            )
            ds.file_keys = part[FILE_KEY].tolist()
            ds.legacy_file_keys = part[LEGACY_FILE_KEY].tolist()
            ds.retrieval_targets = {label: codes[rows] for label, (_, codes) in labels.items()}
            datasets[name] = ds
        return datasets

    # ---- the prepared cache (data.cache) ----------------------------------------------------
    def _prepare_cache(self, datasets: dict[str, Dataset]) -> CacheRecord:
        """Reuse or build the cache of these datasets (under multi-process training, rank 0
        builds while the others wait)."""
        if self.preprocess is None:
            raise ConfigError("data.cache.dir needs data.preprocess (this config predates it)")
        trainer = self.trainer
        distributed = trainer is not None and trainer.world_size > 1
        return prepare_cache(
            self.cache_settings, self.fingerprint_of(datasets), self.preprocess, datasets,
            self.on_bad_image, builder=not distributed or trainer.global_rank == 0,
            wait=(lambda: trainer.strategy.barrier("fashionlab data cache")) if distributed else None)

    def _leave_out(self, bad: list[dict[str, Any]]) -> None:
        """Drop the files found bad while building the cache from the table (listed in
        skipped_images.csv like those the check found)."""
        prepared = self.prepare_table()
        paths = {item["path"]: item["reason"] for item in bad}
        frame = prepared.frame
        keep = ~frame[REL_PATH].isin(list(paths)).to_numpy()
        skipped = [{"path": rel, "source": str(frame.at[i, SOURCE]) if SOURCE in frame.columns else "",
                    "reason": f"{paths[rel]} (found while building the data cache)"}
                   for i, rel in enumerate(frame[REL_PATH]) if rel in paths]
        balance = dict(prepared.balance)
        balance["skipped_bad_images"] = int(balance.get("skipped_bad_images", 0)) + len(skipped)
        self._prepared = replace(prepared, frame=frame[keep].reset_index(drop=True),
                                 targets={t: v[keep] for t, v in prepared.targets.items()},
                                 split=prepared.split[keep], skipped=[*prepared.skipped, *skipped],
                                 balance=balance)

    def _cached(self, split: str) -> bool:
        return self.cache_record is not None and self.cache_record.count(split) > 0

    def cached_loader(self, split: str, transform: Any, train: bool, batch_size: int,
                      persistent: bool = True) -> DataLoader:
        """A StreamingDataLoader over the cached `split` (train: shuffled by (seed, epoch),
        ranks padded to equal shares; else each item once, see data.cache.streaming)."""
        # (litdata, and with it boto3, load only where a cache is read: the readers import without them)
        from fashionlab.data.cache.litdata_hooks import CachedLoader
        from fashionlab.data.cache.streaming import CachedSplit

        self.setup()
        record = self.cache_record
        bad = [b["position"] for b in record.bad_images if b["split"] == split]
        index_map = positions_after_drops(int(record.data["listed"][split]), bad) if bad else None
        dataset = CachedSplit(record.split_dir(split), transform, self.cache_settings.format,
                              shuffle=train, seed=self.seed,
                              storage_options=self.cache_settings.storage_options, index_map=index_map,
                              files=split_hashes(record.data.get("files") or {}, split),
                              count=record.count(split))
        options = self.loader_options()
        options["persistent_workers"] = persistent and options["persistent_workers"]
        return CachedLoader(dataset, batch_size=int(batch_size), **options)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        if not self._cached(split):
            return super()._loader(split, shuffle)
        return self.cached_loader(split, self.splits[split].transform, train=split == "train",
                                  batch_size=self.batch_size if split == "train" else self.eval_batch_size)

    def inference_loader(self, split: str, batch_size: int | None = None) -> DataLoader:
        self.setup()
        if not self._cached(split):
            return super().inference_loader(split, batch_size)
        return self.cached_loader(split, self.eval_transform(), train=False,
                                  batch_size=int(batch_size or self.eval_batch_size), persistent=False)

    def retrieval_labels(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """{label: (names, each kept image's code into names)} of `retrieval_label_columns`
        (names sorted; an image without the label has code -1)."""
        frame = self.prepare_table().frame
        out = {}
        for label, column in self.retrieval_label_columns.items():
            values = frame[column].map(lambda v: None if v is None or v != v else str(v))
            names = sorted(set(values.dropna()))
            index = {n: i for i, n in enumerate(names)}
            out[label] = (names, np.array([index.get(v, -1) for v in values], dtype=np.int64))
        return out

    def retrieval_tasks(self) -> list[TaskSpec]:
        """The retrieval labels as multiclass TaskSpecs (classes: the label names)."""
        return [TaskSpec(name=label, kind="multiclass", classes=tuple(names))
                for label, (names, _) in self.retrieval_labels().items()]

    def train_sampler(self) -> Sampler | None:
        if self.balance.sampler != "weighted":
            return None
        labels = self.splits["train"].targets[self.balance_task()]
        weights = balancing.class_weights(labels)
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                     num_samples=len(labels), replacement=True,
                                     generator=generator)

    def fingerprint_items(self, digest: Any, dataset: Dataset, legacy: bool = False) -> None:
        """Relative path, size and content SHA-256 (`file_key`, see table.check) of every file of
        the split, and its boxes (`legacy`: size and quick hash, `legacy_file_key`)."""
        keys = dataset.legacy_file_keys if legacy else dataset.file_keys
        for rel, key in zip(dataset.rel_paths, keys, strict=True):
            digest.update(f"{rel}\t{key}\n".encode())
        if dataset.boxes is not None:
            digest.update(repr(dataset.boxes).encode())

    def split_items(self, split: str) -> list[Any]:
        """The split's files, relative to data.root (so an identical copy elsewhere matches)."""
        return list(self.splits[split].rel_paths)

    def data_stats(self) -> dict[str, Any]:
        stats = super().data_stats()
        summary = self.prepare_table().balance
        stats.update(data_skipped_images=summary["skipped_bad_images"],
                     data_dropped_rare=summary["dropped_rare"], data_capped=summary["capped"])
        if self.cache_record is not None:
            stats["data_cache_key"] = self.cache_record.key
        return stats
