"""Trusting a cache: each split's `index.json` names only what this project writes (checked
before litdata reads it), and every chunk and index file matches the SHA-256 that the cache's
completion record (`cache.json`) holds. docs/datasets.md ("Trust") and
docs/provenance_safe_loading.md ("Data caches")."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fashionlab.errors import CacheError
from fashionlab.fileio import file_digest

INDEX = "index.json"
#: The fields a cached item's litdata index may name: int, uint8 image array, JPEG bytes,
#: float32 multi-label vector.
def allowed_formats() -> frozenset[str]:
    """The data formats fashionlab writes: ints, arrays, bytes and float32 vectors (litdata's
    name of the last comes from litdata, imported here on first use)."""
    from fashionlab.data.cache.litdata_hooks import numpy_format

    return frozenset({"int", "numpy", "bytes", numpy_format("float32")})
CHUNK_NAME = re.compile(r"chunk-\d+-\d+\.bin")
NOT_OURS = "which fashionlab never writes, so nothing of this cache was read"


def way_out(folder: str) -> str:
    """The advice on a bad cache: delete its key folder, the next run builds it again."""
    return f"delete {folder} to rebuild it (the next run with the cache builds it again)"


def _spec_types(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        if "type" in node:
            yield node["type"]
        for value in node.values():
            yield from _spec_types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _spec_types(value)


def index_problem(index: Mapping[str, Any]) -> str | None:
    """What in a litdata index differs from what this project writes (None: nothing)."""
    config = index.get("config")
    chunks = index.get("chunks")
    if not isinstance(config, dict) or not isinstance(chunks, list):
        return "not a litdata chunk index (no config and chunks)"
    formats = config.get("data_format")
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        return f"data_format {formats!r} is not a list of names"
    allowed = allowed_formats()
    unknown = [f for f in formats if f not in allowed]
    if unknown:
        return (f"it names the serializer(s) {', '.join(repr(f) for f in unknown)} "
                f"(data_format; allowed: {', '.join(sorted(allowed))})")
    for key, allowed in (("compression", None), ("encryption", None), ("item_loader", "PyTreeLoader")):
        if config.get(key) != allowed:
            return f"config.{key} is {config.get(key)!r}, expected {allowed!r}"
    try:
        spec = json.loads(config.get("data_spec") or "null")
    except (TypeError, ValueError):
        return "config.data_spec is not JSON"
    odd = {t for t in _spec_types(spec) if t not in (None, "builtins.dict")}
    if odd:
        return f"config.data_spec names the type(s) {', '.join(sorted(map(str, odd)))}"
    for chunk in chunks:
        if not isinstance(chunk, dict) or not CHUNK_NAME.fullmatch(str(chunk.get("filename"))) \
                or not isinstance(chunk.get("chunk_size"), int) or chunk["chunk_size"] < 0:
            return f"chunk entry {chunk!r} is not a chunk-<n>-<n>.bin file with an item count"
    return None


def check_index(path: str | Path, where: str, count: int | None, advice: str) -> list[str]:
    """Refuse an index that names anything but what this project writes, or whose items do not
    add up to `count` (the record's); returns its chunk file names."""
    try:
        index = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CacheError(f"{where}: cannot be read as a litdata index ({exc}); {advice}") from None
    problem = index_problem(index) if isinstance(index, dict) else "not a JSON object"
    if problem:
        raise CacheError(f"{where}: {problem}, {NOT_OURS}; do not use this cache: {advice}")
    held = sum(chunk["chunk_size"] for chunk in index["chunks"])
    if count is not None and held != count:
        raise CacheError(f"{where}: holds {held} items, its cache.json says {count}; {advice}")
    return [chunk["filename"] for chunk in index["chunks"]]


def check_file(path: str | Path, where: str, expected: str | None, advice: str) -> None:
    """Refuse a file whose SHA-256 is not the one the record holds for it."""
    if expected is None:
        raise CacheError(f"{where}: not listed in its cache.json; {advice}")
    try:
        digest = file_digest(path)
    except OSError as exc:
        raise CacheError(f"{where}: cannot be read ({exc.strerror or exc}); {advice}") from None
    if digest != expected:
        raise CacheError(f"{where}: its SHA-256 differs from the one in cache.json (the file is damaged "
                         f"or was changed since the build); {advice}")


def split_files(root: str, split: str, storage_options: Mapping[str, Any] | None = None
                ) -> dict[str, str]:
    """{"<split>/<file>": SHA-256} of a split's index and chunks (a remote split is read back)."""
    from fashionlab.data.cache.build import is_remote
    from fashionlab.data.cache.litdata_hooks import download_file

    base = f"{root.rstrip('/')}/{split}"
    if not is_remote(root):
        names = [INDEX, *check_index(Path(base) / INDEX, f"{base}/{INDEX}", None, "")]
        return {f"{split}/{name}": file_digest(Path(base) / name) for name in names}
    out = {}
    with tempfile.TemporaryDirectory(prefix="fashionlab-cache-hash-") as folder:
        local = Path(folder) / "file"
        download_file(f"{base}/{INDEX}", str(local), storage_options)
        names = [INDEX, *check_index(local, f"{base}/{INDEX}", None, "")]
        for name in names:
            if name != INDEX:
                download_file(f"{base}/{name}", str(local), storage_options)
            out[f"{split}/{name}"] = file_digest(local)
            local.unlink()
    return out


def split_hashes(files: Mapping[str, str], split: str) -> dict[str, str]:
    """{file name: SHA-256} of one split, from the record's "files"."""
    prefix = f"{split}/"
    return {name[len(prefix):]: digest for name, digest in files.items() if name.startswith(prefix)}


def verify_local(folder: Path, data: Mapping[str, Any]) -> None:
    """Verify a local cache `folder` (its key folder) against its record `data`: every split's
    index (allow-list, item count) and the SHA-256 of every index and chunk file."""
    advice = way_out(str(folder))
    record = folder / "cache.json"
    files = data.get("files")
    if not isinstance(files, dict):
        raise CacheError(f"{record}: holds no SHA-256 of its files; {advice}")
    bad = {}
    for item in data.get("bad_images", []):
        bad[item.get("split")] = bad.get(item.get("split"), 0) + 1
    for split, count in dict(data.get("counts", {})).items():
        listed = int(dict(data.get("listed", {})).get(split, -1))
        if listed - bad.get(split, 0) != int(count):
            raise CacheError(f"{record}: counts.{split} = {count} disagrees with its listed and bad "
                             f"images ({listed} - {bad.get(split, 0)}); {advice}")
        if not count:
            continue
        base = folder / split
        names = check_index(base / INDEX, str(base / INDEX), None, advice)  # the allow-list first
        check_file(base / INDEX, str(base / INDEX), files.get(f"{split}/{INDEX}"), advice)
        held = sum(chunk["chunk_size"] for chunk in json.loads((base / INDEX).read_text())["chunks"])
        if held != int(count):
            raise CacheError(f"{record}: counts.{split} = {count}, but {base / INDEX} (as built) holds "
                             f"{held} items; {advice}")
        for name in names:
            check_file(base / name, str(base / name), files.get(f"{split}/{name}"), advice)
