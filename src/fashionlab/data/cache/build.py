"""Building the prepared cache once: its key, the optimised copy (`litdata.optimize`) and its
atomic completion.

Layout: `<data.cache.dir>/<key>/<split>/` (litdata chunks + index.json per split) and
`<key>/cache.json`, the completion record, written last: what the cache was built from, its item
counts and the SHA-256 of every chunk and index file (checked before use, see `integrity`). A
folder without the record is a build that did not finish (killed, or failed): it is never read,
and the next run rebuilds it. Builds never overwrite a published cache, and two jobs building one
key at once both end up reading the one that was published first:

- locally, a build goes to a temporary sibling `.<key>.partial-<host>-<pid>-<id>` (record
  included), published by renaming it to `<key>`, which fails when another build got there first
  (a later build removes a partial folder once its process is gone);
- on an object store (`s3://...`, `gs://...`, see `store`), a build writes under its own prefix
  `<key>/build-<id>/<split>/`, checks that every chunk its indexes name is there, and publishes
  by writing `<key>/cache.json` (naming its `build_dir`) only if no record exists, in one
  conditional request; the loser deletes its own prefix.

The key is the SHA-256 of what decides the stored bytes, and only that: the data fingerprint
(files and the SHA-256 of their content, boxes, labels, tasks, splits), the decoding mode (full or
reduced JPEG decoding), the stored short side, the cache format and its version. Other data or
stored pixels get another key, so a cache is never silently stale; the normalisation, the
interpolation to the input size and the augmentation are applied when reading, so configs that
differ only in them share a cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fashionlab.data.file_dataset import FileImageDataset
from fashionlab.data.preprocess import Preprocessing
from fashionlab.errors import BadImageError, ConfigError
from fashionlab.fileio import write_json


def _store() -> Any:
    """The object-store adapter, imported on first use: it loads litdata's clients and boto3,
    which a run without a cache (or a machine without boto3, as the GPU kit) never needs."""
    from fashionlab.data.cache import store

    return store

log = logging.getLogger(__name__)

#: Bumped whenever what a cache holds (item layout, resize rule, record) changes: old caches are
#: not read. 2: the record holds the SHA-256 of every file; the key leaves out the normalisation.
CACHE_VERSION = 2
FORMATS = ("raw", "jpeg")
RECORD = "cache.json"


@dataclass(frozen=True)
class CacheSettings:
    """`data.cache`: where the cache lives (None: off), build workers (None: every core), the
    storage format (raw uint8 arrays or JPEG at `quality`), chunk size and object-store options."""

    dir: str | None = None
    workers: int | None = None
    format: str = "raw"
    quality: int = 95
    chunk_bytes: str = "64MB"
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> CacheSettings:
        values = dict(cfg or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"data.cache: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(cls.__dataclass_fields__)})")
        settings = cls(**{k: v for k, v in values.items() if v is not None or k == "dir"})
        if settings.format not in FORMATS:
            raise ConfigError(f"data.cache.format={settings.format!r}; expected one of "
                              f"{', '.join(FORMATS)}")
        if not 1 <= int(settings.quality) <= 100:
            raise ConfigError(f"data.cache.quality={settings.quality!r} must be 1..100")
        if settings.workers is not None and int(settings.workers) < 1:
            raise ConfigError(f"data.cache.workers={settings.workers!r} must be 1 or more (null: every core)")
        return settings

    @property
    def enabled(self) -> bool:
        return bool(self.dir)

    def format_tag(self) -> str:
        return f"jpeg-q{int(self.quality)}" if self.format == "jpeg" else "raw-uint8"


def is_remote(location: str) -> bool:
    """True for an object-store URL (s3://, gs://, ...), False for a local folder."""
    return "://" in str(location)


def stored_short_side(record: Preprocessing) -> int:
    """The short side images are stored with: the input size plus the margin the train crop
    needs, ceil(input_size * decode_margin) (the record's `decode_min_side` when decoding is
    reduced; see fashionlab.data.preprocess)."""
    return record.decode_min_side or math.ceil(record.input_size * record.decode_margin - 1e-9)


def cache_key(fingerprint: str, record: Preprocessing, settings: CacheSettings,
              short_side: int) -> tuple[str, dict[str, Any]]:
    """(key, the inputs it hashes): 24 hex digits of their SHA-256. Only what decides the stored
    bytes: the preprocessing record counts through its decoding mode and the short side."""
    inputs = {"version": CACHE_VERSION, "format": settings.format_tag(), "short_side": int(short_side),
              "decode": record.decode, "data_fingerprint": fingerprint}
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return digest[:24], inputs


def fit_short_side(image: np.ndarray, side: int) -> np.ndarray:
    """`image` resized (area interpolation) so that its shorter side is `side`; smaller images
    are kept as they are (never enlarged)."""
    height, width = image.shape[:2]
    short = min(height, width)
    if short <= side:
        return image
    scale = side / short
    size = (max(side, round(width * scale)), side) if height < width else \
        (side, max(side, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB from JPEG bytes stored in the cache."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class ItemWriter:
    """litdata.optimize's function: split position -> the stored item (index, id, image, labels).

    A file that fails to decode is written to `bad_dir` (one JSON file, read after the build) and
    left out of the cache (returns None)."""

    def __init__(self, dataset: FileImageDataset, short_side: int, settings: CacheSettings,
                 bad_dir: str) -> None:
        self.dataset = dataset
        self.short_side = int(short_side)
        self.format = settings.format
        self.quality = int(settings.quality)
        self.bad_dir = bad_dir

    def __call__(self, position: int) -> dict[str, Any] | None:
        try:
            image = fit_short_side(self.dataset.raw_image(position), self.short_side)
        except BadImageError as exc:
            write_json(Path(self.bad_dir) / f"{position}.json",
                       {"position": int(position), "path": self.dataset.rel_paths[position],
                        "reason": exc.reason})
            return None
        stored: Any = encode_jpeg(image, self.quality) if self.format == "jpeg" else image
        targets = {}
        for task, values in self.dataset.targets.items():
            value = values[position]
            targets[task] = (np.asarray(value, dtype=np.float32) if np.ndim(value)
                             else int(value))
        return {"index": int(position), "image": stored, "targets": targets}


@dataclass
class CacheRecord:
    """The completion record: where the cache is, what it was built from, what it holds."""

    location: str
    key: str
    data: dict[str, Any]

    def split_dir(self, split: str) -> str:
        build_dir = self.data.get("build_dir")  # an object-store build's own prefix
        folder = f"{self.key}/{build_dir}" if build_dir else self.key
        return f"{self.location.rstrip('/')}/{folder}/{split}"

    def count(self, split: str) -> int:
        return int(self.data["counts"].get(split, 0))

    @property
    def bad_images(self) -> list[dict[str, Any]]:
        return list(self.data.get("bad_images", []))


def read_record(location: str, key: str, storage_options: Mapping[str, Any] | None = None
                ) -> CacheRecord | None:
    """The completion record of `<location>/<key>`, or None when that cache is not complete."""
    target = f"{location.rstrip('/')}/{key}/{RECORD}"
    if not is_remote(location):
        path = Path(target)
        return CacheRecord(location, key, json.loads(path.read_text())) if path.is_file() else None
    data = _store().read_bytes(target, storage_options)
    return None if data is None else CacheRecord(location, key, json.loads(data))


def _start_method() -> str | None:
    # fork, like torch's DataLoader workers on Linux (spawn would re-import torch in every worker)
    return "fork" if sys.platform.startswith("linux") else None


def _optimize_split(writer: ItemWriter, count: int, output_dir: str, settings: CacheSettings,
                    split: str) -> None:
    import litdata

    workers = max(1, min(int(settings.workers or os.cpu_count() or 1), count))
    log.info("data cache: writing %s (%d images, %d workers) to %s", split, count, workers, output_dir)
    remote = is_remote(output_dir)
    options = _store().client_options(output_dir, settings.storage_options) if remote else {}
    # litdata prints its steps and an advertisement ("Create an account on lightning.ai") on stdout
    # for every split: to the debug log instead (its progress bar, on stderr, stays)
    with _store().private_staging(), contextlib.redirect_stdout(_DebugLines("litdata: %s")):
        litdata.optimize(
            fn=writer, inputs=list(range(count)), output_dir=output_dir, num_workers=workers,
            chunk_bytes=settings.chunk_bytes, keep_data_ordered=True, reorder_files=False,
            start_method=_start_method(), storage_options=options, verbose=True,
        )
    if remote:
        _check_uploaded(output_dir, settings)


class _DebugLines(io.StringIO):
    """A text stream whose complete lines go to this module's debug log."""

    def __init__(self, template: str) -> None:
        super().__init__()
        self.template = template
        self.pending = ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                log.debug(self.template, line.strip())
        return len(text)


def _check_uploaded(split_dir: str, settings: CacheSettings) -> None:
    """Raise unless the split's index.json and every chunk it names are on the store."""
    names = _store().list_names(split_dir, settings.storage_options)
    index = _store().read_bytes(f"{split_dir}/index.json", settings.storage_options)
    chunks = [chunk["filename"] for chunk in json.loads(index)["chunks"]] if index else []
    missing = [name for name in ["index.json", *chunks] if name not in names]
    if missing:
        raise RuntimeError(f"data cache: the build in {split_dir} is incomplete on the store "
                           f"(missing {', '.join(missing[:3])}); nothing was published")


def _bad_images(bad_dir: Path, split: str) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in bad_dir.glob("*.json")]
    return [{"split": split, **item} for item in sorted(found, key=lambda item: item["position"])]


def build_cache(location: str, key: str, inputs: Mapping[str, Any],
                splits: Mapping[str, FileImageDataset], short_side: int,
                settings: CacheSettings, on_bad_image: str) -> CacheRecord:
    """Write the cache `<location>/<key>` (see the module docstring) and return its record.

    Every image is decoded and resized once (`litdata.optimize`, `settings.workers` processes,
    a progress bar). Files that fail to decode stop the build with `on_bad_image=error` (the
    cache stays incomplete, so unused); with `skip` they are left out and listed in the record."""
    started = time.time()
    remote = is_remote(location)
    final = f"{location.rstrip('/')}/{key}"
    build_dir = f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    if remote:
        _store().scheme(location)
        root = f"{final}/{build_dir}"
    else:
        Path(location).mkdir(parents=True, exist_ok=True)
        for stale in Path(location).glob(f".{key}.partial-*"):
            if _abandoned(stale.name):
                log.info("data cache: removing %s (a build that did not finish)", stale)
                shutil.rmtree(stale, ignore_errors=True)
        root = str(Path(location) / f".{key}.partial-{socket.gethostname()}-{os.getpid()}-"
                                    f"{uuid.uuid4().hex[:6]}")
    counts: dict[str, int] = {}
    bad: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fashionlab-cache-bad-") as bad_root:
        for split, dataset in splits.items():
            source = FileImageDataset(dataset.paths, dataset.targets, None, ids=dataset.ids,
                                      rel_paths=dataset.rel_paths, boxes=dataset.boxes,
                                      min_side=dataset.min_side)
            bad_dir = Path(bad_root) / split
            bad_dir.mkdir()
            if len(source):
                writer = ItemWriter(source, short_side, settings, str(bad_dir))
                _optimize_split(writer, len(source), f"{root}/{split}", settings, split)
            found = _bad_images(bad_dir, split)
            bad += found
            counts[split] = len(source) - len(found)
    if bad and on_bad_image == "error":
        _remove(root, remote, settings)
        first = bad[0]
        more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
        raise BadImageError(first["path"], f"{first['reason']} (found while building the data cache)"
                                           f"{more}; data.on_bad_image=skip leaves bad files out and "
                                           f"lists them in skipped_images.csv")
    if bad:
        log.warning("data cache: %d bad image file(s) left out (data.on_bad_image=skip), e.g. %s: %s",
                    len(bad), bad[0]["path"], bad[0]["reason"])
    import litdata

    from fashionlab.data.cache.integrity import split_files

    listed = {split: len(dataset) for split, dataset in splits.items()}
    files: dict[str, str] = {}
    for split, dataset in splits.items():
        if len(dataset):
            files.update(split_files(root, split, settings.storage_options))
    data = {**inputs, "key": key, "counts": counts, "listed": listed, "bad_images": bad, "files": files,
            "litdata": litdata.__version__, "build_seconds": round(time.time() - started, 1)}
    if remote:
        data["build_dir"] = build_dir
    published = _complete(root, final, data, remote, settings)
    if published is data:
        log.info("data cache: %s complete (%s) in %.0f s", final,
                 ", ".join(f"{s}={n}" for s, n in counts.items()), time.time() - started)
    else:
        log.info("data cache: another build published %s meanwhile: reusing it (this build removed)",
                 final)
    return CacheRecord(location, key, published)


def _remove(root: str, remote: bool, settings: CacheSettings) -> None:
    if remote:
        _store().delete_folder(root, settings.storage_options)
    else:
        shutil.rmtree(root, ignore_errors=True)


def _abandoned(name: str) -> bool:
    """True for a partial build folder (`.<key>.partial-<host>-<pid>-<id>`) of this host whose
    process is gone (a build still running, here or on another host, is left alone)."""
    parts = name.split(".partial-", 1)[-1].rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _complete(root: str, final: str, data: dict[str, Any], remote: bool,
              settings: CacheSettings) -> dict[str, Any]:
    """Publish the build in `root` as the cache `final` in one atomic step, unless another build
    published it first: the published record's data (`data` itself when this build won)."""
    if remote:
        text = json.dumps(data, indent=2, sort_keys=True).encode()
        if _store().put_if_absent(f"{final}/{RECORD}", text, settings.storage_options):
            return data
        _remove(root, remote, settings)
        winner = _store().read_bytes(f"{final}/{RECORD}", settings.storage_options)
        if winner is None:
            raise RuntimeError(f"data cache: {final}/{RECORD} exists and cannot be read")
        return json.loads(winner)
    write_json(Path(root) / RECORD, data, sort_keys=True)
    target = Path(final)
    for _ in range(5):
        try:
            os.rename(root, target)  # fails when `target` holds anything: one build wins
            return data
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if (target / RECORD).is_file():  # another build won: its cache is the one
            shutil.rmtree(root, ignore_errors=True)
            return json.loads((target / RECORD).read_text())
        # an incomplete folder under the final name (never read): moved aside, then removed
        aside = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise RuntimeError(f"data cache: could not publish {root} as {target}")
