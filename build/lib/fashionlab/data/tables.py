"""Reading label tables (CSV and the like) with errors that name the file, line and column."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fashionlab.errors import DataFormatError, DataNotFoundError


def read_csv_table(
    path: str | Path, required: Iterable[str] = (), **read_csv_kwargs: Any
) -> pd.DataFrame:
    """A CSV as strings (empty cells = None) plus a `source` column "file.csv:<line>".

    A missing file, an unparsable file or a header without one of the `required` columns raises
    an error naming the file (and the columns it does have).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                            **read_csv_kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataFormatError(f"{path}: cannot parse as CSV ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataFormatError(
            f"{path}:1: header has no column {', '.join(repr(c) for c in missing)}; "
            f"columns are {', '.join(repr(c) for c in table.columns)}")
    table = table.astype(object).where(table.notna(), None)
    table["source"] = [f"{path.name}:{i + 2}" for i in range(len(table))]
    return table


def is_missing(value: Any) -> bool:
    """None, NaN or an empty/blank string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def split_values(value: Any, separators: Sequence[str] = ("|",)) -> list[str] | None:
    """A multi-valued cell ("a|b", "a; b", a list) as a list of stripped names; missing -> None."""
    if isinstance(value, list | tuple | set):
        return [str(v).strip() for v in value if not is_missing(v)]
    if is_missing(value):
        return None
    parts = [str(value)]
    for sep in separators:
        parts = [p for part in parts for p in part.split(sep)]
    return [p.strip() for p in parts if p.strip()]
