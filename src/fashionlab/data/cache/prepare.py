"""Reuse or build the cache of a data module's splits (one builder, the other ranks wait)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from fashionlab.data.cache.build import (
    CacheRecord,
    CacheSettings,
    build_cache,
    cache_key,
    is_remote,
    read_record,
    stored_short_side,
)
from fashionlab.data.cache.integrity import verify_local, way_out
from fashionlab.data.file_dataset import FileImageDataset
from fashionlab.data.preprocess import Preprocessing
from fashionlab.errors import CacheError, DataNotFoundError

log = logging.getLogger(__name__)


def prepare_cache(settings: CacheSettings, fingerprint: str, record: Preprocessing,
                  splits: Mapping[str, FileImageDataset], on_bad_image: str, builder: bool = True,
                  wait: Callable[[], None] | None = None) -> CacheRecord:
    """The complete cache for (`fingerprint`, `record`, `settings`): reused when its record
    exists, else built by the `builder` process while the others `wait` (a barrier)."""
    location = str(settings.dir)
    side = stored_short_side(record)
    key, inputs = cache_key(fingerprint, record, settings, side)
    found = read_record(location, key, settings.storage_options)
    if found is not None:
        log.info("data cache: reusing %s/%s (%s)", location.rstrip("/"), key,
                 ", ".join(f"{s}={n}" for s, n in found.data["counts"].items()))
        verify(found)
        return found
    failure: BaseException | None = None
    if builder:
        log.info("data cache: building %s/%s (images stored with a short side of %d px, %s)",
                 location.rstrip("/"), key, side, settings.format_tag())
        try:
            build_cache(location, key, inputs, splits, side, settings, on_bad_image)
        except BaseException as exc:  # the other ranks still leave the barrier, then fail too
            failure = exc
    if wait is not None:
        wait()
    if failure is not None:
        raise failure
    found = read_record(location, key, settings.storage_options)
    if found is None:
        raise DataNotFoundError(f"data.cache.dir={location}: the cache {key} was not built (see the "
                                f"first process's error; with several nodes, data.cache.dir must be "
                                f"a folder every node sees, or an object-store URL)")
    return found


def verify(record: CacheRecord) -> None:
    """Before a run first uses a cache it did not build: a local one is checked whole (allow-list,
    counts, SHA-256 of every file; CacheError naming the file); a remote one must list its files'
    hashes, and each split is checked as litdata downloads it (see CachedSplit)."""
    started = time.perf_counter()
    if is_remote(record.location):
        if not isinstance(record.data.get("files"), dict):
            raise CacheError(f"{record.location.rstrip('/')}/{record.key}/cache.json: holds no SHA-256 "
                             f"of its files; {way_out(record.location.rstrip('/') + '/' + record.key)}")
        return
    verify_local(Path(record.location) / record.key, record.data)
    log.info("data cache: %s/%s verified (SHA-256 of %d files) in %.1f s", record.location.rstrip("/"),
             record.key, len(record.data["files"]), time.perf_counter() - started)


def positions_after_drops(count: int, bad_positions: list[int]) -> np.ndarray:
    """Each stored item's position in its split once the bad files are left out (-1: left out)."""
    keep = np.ones(count, dtype=bool)
    keep[np.asarray(bad_positions, dtype=np.int64)] = False
    out = np.full(count, -1, dtype=np.int64)
    out[keep] = np.arange(int(keep.sum()))
    return out
