"""Reading the prepared cache: a litdata `StreamingDataset` per split that yields the same item
dicts as `FileImageDataset` (`image` after the split's transform, `targets`, `index`).

Exactly once per epoch, across processes (ranks) and loader workers. litdata's own split of the
items gives every rank but the last whole batches and the rest to the last rank (or drops it with
`drop_last`, which it forces under distributed training). Here instead (`assign_items`):

- val/test (`pad=False`): each item goes to exactly one worker of one rank; the ranks' shares
  differ by at most one item (metrics synced across ranks count each item once);
- train (`pad=True`): every rank gets the same number of items, ceil(N / ranks) (so the same
  number of batches, as DDP needs), the few missing at the end taken again from the start of the
  epoch's order (fewer than `ranks` repeats, like torch's DistributedSampler; never a drop), plus
  one more per rank where a share would end in a batch of a single item.

Within a rank, whole batches are dealt to the workers and the remainder to one of them, so the
rank yields ceil(share / batch_size) batches, which is what the loader's length reports. The
train order is a function of (seed, epoch): litdata's chunk permutation and in-chunk shuffle.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from litdata import StreamingDataset
from litdata.streaming.shuffle import FullShuffle, NoShuffle
from litdata.utilities.env import _DistributedEnv
from torch.utils.data import get_worker_info

from fashionlab.data.array_dataset import label_tensor
from fashionlab.data.cache import litdata_hooks
from fashionlab.data.cache.build import decode_jpeg, is_remote
from fashionlab.data.cache.integrity import INDEX, check_file, check_index, way_out
from fashionlab.data.cache.store import client_options
from fashionlab.errors import CacheError

# litdata logs its disk budget and read mode at INFO each time a loader starts: keep it to warnings.
for _name in ("litdata.utilities.format", "litdata.streaming.dataset"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def rank_shares(num_items: int, world_size: int, pad: bool, batch_size: int = 1) -> list[int]:
    """Items per rank: equal (ceil, padded) for training, else as even as possible. A padded
    share never ends in a batch of one item (BatchNorm cannot train on it): one more repeat."""
    if pad:
        share = math.ceil(num_items / world_size)
        if batch_size > 1 and share > 1 and share % batch_size == 1:
            share += 1
        return [share] * world_size
    base, extra = divmod(num_items, world_size)
    return [base + (rank < extra) for rank in range(world_size)]


def worker_counts(share: int, num_workers: int, batch_size: int) -> list[int]:
    """A rank's items per worker: whole batches in turn, the remainder to the next worker."""
    full, rest = divmod(share, batch_size)
    base, extra = divmod(full, num_workers)
    counts = [(base + (w < extra)) * batch_size for w in range(num_workers)]
    counts[extra % num_workers] += rest
    return counts


def assign_items(chunks: list[tuple[int, Any]], world_size: int, num_workers: int,
                 batch_size: int, pad: bool) -> tuple[list[list[int]], list[list[list[int]]]]:
    """(chunk indexes, intervals) per worker, in litdata's layout (global worker = rank *
    num_workers + worker; an interval is [chunk_start, first, end, chunk_end] of item indexes).

    `chunks` are (chunk index, Interval) in the epoch's order; padding cycles back to its start."""
    total = sum(interval[2] - interval[1] for _, interval in chunks)
    counts = [c for share in rank_shares(total, world_size, pad, batch_size)
              for c in worker_counts(share, num_workers, batch_size)]
    workers_chunks: list[list[int]] = [[] for _ in counts]
    workers_intervals: list[list[list[int]]] = [[] for _ in counts]
    position, offset = 0, 0  # current chunk (cycling) and items of it already dealt
    for worker, needed in enumerate(counts):
        while needed > 0 and total > 0:
            chunk_index, interval = chunks[position % len(chunks)]
            start = interval[1] + offset
            take = min(needed, interval[2] - start)
            workers_chunks[worker].append(int(chunk_index))
            workers_intervals[worker].append([interval[0], start, start + take, interval[3]])
            needed -= take
            offset += take
            if start + take >= interval[2]:
                position, offset = position + 1, 0
    return workers_chunks, workers_intervals


def _ordered_chunks(shuffler: Any, seed: int, epoch: int, shuffle: bool) -> list[tuple[int, Any]]:
    intervals = shuffler.cache.get_chunk_intervals()
    order = np.random.RandomState([seed, epoch]).permutation(len(intervals)) if shuffle \
        else np.arange(len(intervals))
    return [(int(i), intervals[int(i)]) for i in order]


class EvenShuffle(FullShuffle):
    """litdata's full shuffle (chunks permuted by (seed, epoch), items within chunks), with the
    items dealt by `assign_items` (train: padded to equal shares)."""

    pad = True

    def get_chunks_and_intervals_per_workers(self, distributed_env: _DistributedEnv, num_workers: int,
                                             batch_size: int, current_epoch: int) -> Any:
        chunks = _ordered_chunks(self, self.seed, current_epoch, shuffle=True)
        return assign_items(chunks, distributed_env.world_size, num_workers, batch_size, self.pad)


class EvenNoShuffle(NoShuffle):
    """Items in stored order, each dealt once (`assign_items` without padding)."""

    pad = False

    def get_chunks_and_intervals_per_workers(self, distributed_env: _DistributedEnv, num_workers: int,
                                             batch_size: int, current_epoch: int) -> Any:
        chunks = _ordered_chunks(self, self.seed, current_epoch, shuffle=False)
        return assign_items(chunks, distributed_env.world_size, num_workers, batch_size, self.pad)


def item_targets(targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Stored labels as tensors (see `label_tensor`)."""
    return {task: label_tensor(value) for task, value in targets.items()}


class CachedSplit(StreamingDataset):
    """One split of the cache. `image_transform` (albumentations, `image=` keyword) is applied to
    the stored uint8 image; `image_format` is the cache's (raw or jpeg). Train (`shuffle=True`)
    reshuffles every epoch by (seed, epoch) and pads ranks to equal shares; val/test keep the
    stored order and deal each item once (see the module docstring)."""

    def __init__(self, input_dir: str, image_transform: Callable[..., dict] | None, image_format: str,
                 shuffle: bool, seed: int, storage_options: Mapping[str, Any] | None = None,
                 cache_dir: str | None = None, index_map: np.ndarray | None = None,
                 files: Mapping[str, str] | None = None, count: int | None = None) -> None:
        """`index_map`: stored index -> position in the split (when bad files were left out).
        `files`: {file name: SHA-256} of the split's index and chunks (the record's), `count`: its
        items. The split's index.json is checked (allow-list, `count`, hash) before litdata reads
        it; a remote split's files are checked as litdata downloads them (`litdata_hooks`)."""
        remote = is_remote(input_dir) or input_dir.startswith("local:")
        advice = way_out(input_dir.rstrip("/").rsplit("/", 1)[0])
        self._expected = litdata_hooks.Expected(dict(files) if files is not None else None,
                                                input_dir.rstrip("/"), count, advice)
        if remote:
            litdata_hooks.expect(input_dir, self._expected)
        else:
            self._check_index(str(Path(input_dir) / INDEX), str(Path(input_dir) / INDEX))
        super().__init__(input_dir, cache_dir=cache_dir, shuffle=shuffle, seed=int(seed),
                         drop_last=False if _DistributedEnv.detect().world_size == 1 else None,
                         storage_options=client_options(input_dir, storage_options)
                         if is_remote(input_dir) else {},
                         serializers=litdata_hooks.refusing_serializers())
        if remote:  # the copy litdata reads (downloaded now, or by an earlier run)
            self._check_index(os.path.join(self.input_dir.path, INDEX), f"{input_dir.rstrip('/')}/{INDEX}")
        self.image_transform = image_transform
        self.image_format = image_format
        self.index_map = index_map
        # the epoch litdata shuffles by, shared with (persistent) loader workers
        self._shared_epoch = torch.ones((), dtype=torch.int64).share_memory_()

    def _check_index(self, path: str, where: str) -> None:
        expected = self._expected
        check_index(path, where, expected.count, expected.way_out)
        if expected.files is not None:
            check_file(path, where, expected.files.get(INDEX), expected.way_out)

    def _create_shuffler(self, cache: Any) -> Any:
        seed = int((self._state_dict or {}).get("seed", self.seed))
        kind = EvenShuffle if self.shuffle else EvenNoShuffle
        return kind(cache, seed, False)

    def _refresh_distributed_env(self) -> None:
        """In the main process of each rank: the process group as it is now (a loader built
        before the ranks started, e.g. for ddp_spawn prediction, saw one process)."""
        if get_worker_info() is None:
            env = _DistributedEnv.detect()
            if env != self.distributed_env:
                self.distributed_env, self.shuffler = env, None

    def set_epoch(self, current_epoch: int) -> None:
        super().set_epoch(current_epoch)
        self._shared_epoch.fill_(int(self.current_epoch))

    def get_len(self, num_workers: int, batch_size: int) -> int:
        self._refresh_distributed_env()
        return super().get_len(num_workers, batch_size)

    def __iter__(self) -> CachedSplit:
        if self.input_dir.url:  # again: a spawned loader worker starts without it
            litdata_hooks.expect(self.input_dir.url, self._expected)
        self._refresh_distributed_env()
        if self._state_dict is None:
            self.current_epoch = int(self._shared_epoch)
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        try:
            item = super().__getitem__(index)
        except RuntimeError as exc:  # litdata re-raises a download thread's error as its cause
            if isinstance(exc.__cause__, CacheError):
                raise exc.__cause__ from None
            raise
        if not isinstance(item, dict) or "image" not in item:
            return item
        image = item["image"]
        if self.image_format == "jpeg":
            image = decode_jpeg(image)
        if self.image_transform is not None:
            image = self.image_transform(image=np.ascontiguousarray(image))["image"]
        else:
            image = torch.from_numpy(np.ascontiguousarray(image))
        index = int(item["index"])
        if self.index_map is not None:
            index = int(self.index_map[index])
        return {"image": image, "targets": item_targets(item["targets"]), "index": index}
