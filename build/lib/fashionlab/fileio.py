"""The project's one JSON writer and one file hasher (every stage writes and hashes through these)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def to_jsonable(value: Any) -> Any:
    """DataFrames become lists of records, arrays and tuples lists, numpy scalars Python ones,
    non-finite floats null (so the file stays valid JSON)."""
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.to_dict(orient="records"))
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> Path:
    """Write `data` (see `to_jsonable`; other objects as their str) as indented JSON, atomically:
    a reader sees the old file or the whole new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=sort_keys, default=str) + "\n"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (hashlib.file_digest: read in chunks, not held in memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(
            handle, lambda: hashlib.new(algorithm, usedforsecurity=False)).hexdigest()
