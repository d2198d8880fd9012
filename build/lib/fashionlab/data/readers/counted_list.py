"""Whitespace-separated list files with a count line and a header line (DeepFashion, CelebA)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from fashionlab.errors import DataFormatError, DataNotFoundError


def open_text(path: str | Path) -> Path:
    """`path` as a Path, or DataNotFoundError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: file not found")
    return path


def read_count_and_header(path: str | Path) -> tuple[int, str]:
    """The declared row count (line 1) and the header text (line 2)."""
    path = open_text(path)
    with open(path, encoding="utf-8-sig") as handle:
        first = handle.readline()
        header = handle.readline()
    try:
        count = int(first.strip())
    except ValueError:
        raise DataFormatError(
            f"{path}:1: expected the number of rows, got {first.strip()[:60]!r}") from None
    if not header.strip():
        raise DataFormatError(f"{path}:2: expected a header line, the file ends or the line is empty")
    return count, header.strip()


def iter_rows(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) of every non-blank data row (line 3 on)."""
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= 2:
                continue
            line = line.strip()
            if line:
                yield number, line


def check_count(path: str | Path, declared: int, found: int) -> None:
    """The count line must match the rows read."""
    if declared != found:
        raise DataFormatError(
            f"{path}:1: the count line declares {declared} rows but the file holds {found}")


def read_counted_list(path: str | Path) -> tuple[str, list[tuple[int, str]]]:
    """Header text and (line number, line) of each row, after checking the count line."""
    path = open_text(path)
    declared, header = read_count_and_header(path)
    rows = list(iter_rows(path))
    check_count(path, declared, len(rows))
    return header, rows


def split_name_and_value(path: Path, number: int, line: str) -> tuple[str, str]:
    """`name with spaces   value` -> (name, value): the value is the last token."""
    parts = line.rsplit(None, 1)
    if len(parts) != 2:
        raise DataFormatError(f"{path}:{number}: expected '<name> <value>', got {line[:80]!r}")
    return parts[0].strip(), parts[1]


def check_unique_names(path: str | Path, names: Sequence[str], lines: Sequence[int],
                       what: str = "image") -> None:
    """Each name listed once: a repeat (whose label would silently win) names both lines."""
    first: dict[str, int] = {}
    for name, line in zip(names, lines, strict=True):
        earlier = first.setdefault(name, line)
        if earlier != line:
            raise DataFormatError(f"{path}:{line}: {what} {name} is listed twice "
                                  f"(lines {earlier} and {line})")
