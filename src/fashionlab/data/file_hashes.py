"""The SHA-256 of every image file's content, for the data fingerprint, with a stat cache.

Hashing reads every byte of every file. A later run skips a file whose stat (size, mtime_ns,
ctime_ns, inode) is the one recorded when it was hashed: rewriting a file changes its ctime, which
cannot be set back (`touch -r` and `os.utime` restore the mtime only). A file changed within the
file system's timestamp granularity of being hashed could keep all four, so a file whose mtime or
ctime is less than `SETTLE_NS` before it was hashed is not recorded (hashed again next time).

The records live in `<store>/<SHA-256 of the data root>.json` (`store`: $FASHIONLAB_HASH_STORE,
else $XDG_CACHE_HOME/fashionlab/file-hashes, else ~/.cache/fashionlab/file-hashes); losing them
costs only the time to hash again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fashionlab.fileio import file_digest

log = logging.getLogger(__name__)

#: Files changed less than this before they are hashed are hashed again on the next run.
SETTLE_NS = 2_000_000_000


def default_store() -> Path:
    """Where the stat cache lives (see the module docstring)."""
    if os.environ.get("FASHIONLAB_HASH_STORE"):
        return Path(os.environ["FASHIONLAB_HASH_STORE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fashionlab" / "file-hashes"


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _hash_one(path: str, settle_ns: int) -> tuple[str, list[int] | None]:
    """(SHA-256, the stat to record, or None when too recent to be trusted later)."""
    now = time.time_ns()
    before = os.stat(path)
    digest = file_digest(path)
    after = os.stat(path)
    stable = _stat_key(before) == _stat_key(after) and \
        max(after.st_mtime_ns, after.st_ctime_ns) < now - settle_ns
    return digest, _stat_key(after) if stable else None


def content_hashes(paths: Sequence[str], root: str | Path, store: str | Path | None = None,
                   settle_ns: int = SETTLE_NS, workers: int | None = None) -> tuple[list[str], int]:
    """(the SHA-256 of each file's content, how many files were read) for files under `root`;
    `store`: the stat cache's folder (None: `default_store()`). An unreadable file raises OSError."""
    folder = Path(store) if store is not None else default_store()
    record_path = folder / f"{hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:24]}.json"
    try:
        known = json.loads(record_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        known = {}
    out: list[str | None] = [None] * len(paths)
    todo = []
    for i, path in enumerate(paths):
        entry = known.get(path)
        if entry is not None and entry[:4] == _stat_key(os.stat(path)):
            out[i] = entry[4]
        else:
            todo.append(i)
    if todo:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 2)) as pool:
            results = list(pool.map(lambda i: _hash_one(paths[i], settle_ns), todo))
        for i, (digest, stat) in zip(todo, results, strict=True):
            out[i] = digest
            if stat is not None:
                known[paths[i]] = [*stat, digest]
            else:
                known.pop(paths[i], None)
        log.info("hashed the content of %d of %d files in %.1f s", len(todo), len(paths),
                 time.perf_counter() - started)
        _save(record_path, {"root": str(root), "files": known})
    return [str(d) for d in out], len(todo)


def _save(path: Path, data: dict) -> None:
    """Atomically (concurrent runs may write the same record); a store that cannot be written
    only means hashing again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                         delete=False) as handle:
            json.dump(data, handle)
        os.replace(handle.name, path)
    except OSError as exc:
        log.warning("could not record file hashes in %s (%s): the next run hashes the files again",
                    path, exc)
