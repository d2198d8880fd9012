"""Small helpers shared by the dataset readers: locating files, writing what a reader found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fashionlab.errors import DataNotFoundError
from fashionlab.fileio import write_json

READ_REPORT = "read_report.json"


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of `candidates` (relative to `root`) that exists, or an error naming them all."""
    for rel in candidates:
        if (root / rel).is_file():
            return root / rel
    raise DataNotFoundError(
        f"{what} not found; looked for {', '.join(str(root / c) for c in candidates)}")


def write_read_report(folder: str | Path, report: Mapping[str, Any]) -> Path:
    """`read_report.json` in `folder`: rows recovered, images missing, classes merged, ..."""
    return write_json(Path(folder) / READ_REPORT, report)
