"""The one place that reaches into litdata's internals (everything else uses its public API).

- `refusing_serializers()`: litdata picks each field's deserializer by the name a split's
  `index.json` gives; every name this project never writes (`pickle` among them) is replaced by
  one that refuses, so that even an index changed after it was checked cannot run code.
- Verifying downloaders: litdata's downloader of each object-store scheme, wrapped so that a file
  it has downloaded is checked against the SHA-256 in the cache's record (and an `index.json`
  against the allow-list) before it is published under its name in litdata's local cache: a
  damaged or altered chunk is never read. Splits announce their expected hashes with `expect`.
- `numpy_format()`: litdata's data-format name of a 1-D array of a dtype.
- `download_file()`: one object-store file to a local path.
- `CachedLoader`: litdata's StreamingDataLoader whose workers stop as soon as it is dropped.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from litdata import StreamingDataLoader
from litdata.constants import _NUMPY_DTYPES_MAPPING
from litdata.streaming import downloader as _downloader
from litdata.streaming.serializers import _SERIALIZERS, Serializer

from fashionlab.errors import CacheError

#: The litdata serializers of what this project stores (item index and int labels, uint8 image
#: arrays, JPEG bytes, float32 multi-label vectors).
ALLOWED_SERIALIZERS = ("int", "numpy", "bytes", "no_header_numpy")


def numpy_format(dtype: Any) -> str:
    """litdata's data-format name of a 1-D array of `dtype` (`no_header_numpy:<code>`)."""
    codes = {value: key for key, value in _NUMPY_DTYPES_MAPPING.items()}
    return f"no_header_numpy:{codes[np.dtype(dtype)]}"


class _Refused(Serializer):
    """Stands in for a serializer this project never writes: reading such a field fails."""

    def __init__(self, name: str) -> None:
        self.name = name

    def serialize(self, data: Any) -> tuple[bytes, str | None]:
        raise CacheError(f"the litdata serializer {self.name!r} is not used by fashionlab's cache")

    def deserialize(self, data: bytes) -> Any:
        raise CacheError(f"a cached item names the litdata serializer {self.name!r}, which fashionlab "
                         f"never writes; nothing of it was read (do not use this cache)")

    def can_serialize(self, data: Any) -> bool:
        return False


def refusing_serializers() -> dict[str, Serializer]:
    """litdata's `serializers=` for a StreamingDataset: every name but ALLOWED_SERIALIZERS refused."""
    return {name: _Refused(name) for name in _SERIALIZERS if name not in ALLOWED_SERIALIZERS}


@dataclass(frozen=True)
class Expected:
    """What a split's downloaded files must hash to: {file name: SHA-256} (None: not checked),
    the split's address (for messages), its expected item count and the way out of a mismatch."""

    files: Mapping[str, str] | None
    where: str
    count: int | None
    way_out: str


_EXPECTED: dict[str, Expected] = {}


def expect(remote_dir: str, expected: Expected) -> None:
    """Announce the hashes of the split at `remote_dir` (this process; call again in workers
    that were not forked)."""
    _EXPECTED[str(remote_dir).rstrip("/")] = expected


def _check_download(remote_dir: str, tmp_path: str, local_path: str) -> None:
    expected = _EXPECTED.get(str(remote_dir).rstrip("/"))
    if expected is None:
        return
    from fashionlab.data.cache.integrity import check_file, check_index

    name = os.path.basename(local_path)
    try:
        if name == "index.json":
            check_index(tmp_path, f"{expected.where}/{name}", expected.count, expected.way_out)
        if expected.files is not None:
            check_file(tmp_path, f"{expected.where}/{name}", expected.files.get(name), expected.way_out)
    except CacheError:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        raise


class VerifyingDownloader:
    """Mixed into litdata's downloaders: a downloaded file is checked before it is published."""

    _remote_dir: str

    def _publish_file(self, tmp_path: str, local_filepath: str) -> None:
        _check_download(self._remote_dir, tmp_path, local_filepath)
        super()._publish_file(tmp_path, local_filepath)  # type: ignore[misc]


def _install() -> None:
    for prefix, cls in list(_downloader._DOWNLOADERS.items()):
        if issubclass(cls, VerifyingDownloader):
            continue
        name = f"Verifying{cls.__name__}"
        wrapped = type(name, (VerifyingDownloader, cls), {"__module__": __name__, "__qualname__": name})
        globals()[name] = wrapped  # picklable by name (spawned loader workers)
        _downloader.register_downloader(prefix, wrapped, overwrite=True)


_install()


def download_file(url: str, local_path: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Copy the object-store file `url` to `local_path`."""
    from litdata.streaming.fs_provider import _get_fs_provider

    from fashionlab.data.cache.store import client_options

    _get_fs_provider(url, client_options(url, storage_options)).download_file(url, local_path)


class CachedLoader(StreamingDataLoader):
    """litdata's StreamingDataLoader, freed as soon as its last reference goes. litdata's
    multi-process iterator keeps a reference to its loader (`_loader`), and the loader keeps its
    (persistent) iterator: in that cycle the garbage collector closed the workers' index queues
    before the iterator's shutdown sent them the stop, so each worker was waited for 5 s and
    then killed. The iterator refers to its loader weakly here, which breaks the cycle."""

    def _get_iterator(self) -> Any:
        iterator = super()._get_iterator()
        if getattr(iterator, "_loader", None) is self:
            iterator._loader = weakref.proxy(self)
        return iterator
