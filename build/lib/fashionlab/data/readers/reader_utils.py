"""Small helpers shared by the dataset readers: locating files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fashionlab.errors import DataNotFoundError


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of `candidates` (relative to `root`) that exists, or an error naming them all."""
    for rel in candidates:
        if (root / rel).is_file():
            return root / rel
    raise DataNotFoundError(
        f"{what} not found; looked for {', '.join(str(root / c) for c in candidates)}")
