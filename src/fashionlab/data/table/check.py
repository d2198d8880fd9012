"""Check step: every image listed once, labels within the declared classes, files readable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from fashionlab.data.file_hashes import content_hashes
from fashionlab.data.images import check_images
from fashionlab.data.table.frame import ABS_PATH, AUTO, FILE_KEY, LEGACY_FILE_KEY, REL_PATH, ImageTable
from fashionlab.errors import BadImageError, DataFormatError

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")
CHECK_MODES = ("header", "full", "exists")


def check_unique_paths(table: ImageTable) -> None:
    """An image listed twice (even spelt differently) would land in two splits, or carry two
    labels: an error naming both rows."""
    first: dict[str, int] = {}
    for i, path in enumerate(table.frame[ABS_PATH]):
        key = os.path.normpath(path)
        j = first.setdefault(key, i)
        if j != i:
            raise DataFormatError(
                f"{table.source(i)}: image {table.frame.at[j, REL_PATH]} is listed twice "
                f"({table.source(j)} and {table.source(i)}); list each image once")


def check_known_classes(table: ImageTable) -> None:
    """Labels of tasks with a class list must be in it (before the slower file checks)."""
    for task_name, entry in table.tasks_cfg.items():
        if entry["classes"] == AUTO:
            continue
        known = {str(c) for c in entry["classes"]}
        for i, v in enumerate(table.frame[task_name]):
            names = [v] if entry["kind"] == "multiclass" else (v or [])
            for cls in names:
                if cls is not None and cls not in known:
                    raise DataFormatError(
                        f"{table.source(i)}: unknown class {cls!r} for task {task_name!r}; "
                        f"data.tasks.{task_name}.classes lists {', '.join(sorted(known))}")


def check_files(table: ImageTable, mode: str, on_bad_image: str, workers: int | None
                ) -> tuple[ImageTable, list[dict[str, str]]]:
    """Each file checked (`mode`: header, full or exists); bad ones stop the build or, with
    `on_bad_image=skip`, are left out and listed. Adds `file_key` of each good file: its size and
    the SHA-256 of its content (`fashionlab.data.file_hashes`: every byte read once, then only
    when its stat changes), so the data fingerprint sees any change of content."""
    frame = table.frame
    paths = frame[ABS_PATH].tolist()
    if mode == "exists":
        infos: list[str | None] = []
        errors: list[BadImageError | None] = []
        for p in paths:
            try:
                infos.append(str(Path(p).stat().st_size))
                errors.append(None)
            except OSError:
                infos.append(None)
                errors.append(BadImageError(p, "file not found"))
        legacy = list(infos)
    else:
        checked, errors = check_images(paths, full=mode == "full", workers=workers)
        infos = [str(i.size) if i else None for i in checked]
        legacy = [f"{i.size}:{i.quick_hash}" if i else None for i in checked]
    bad = [i for i, e in enumerate(errors) if e is not None]
    skipped = [{"path": frame.at[i, REL_PATH], "source": table.source(i),
                "reason": errors[i].reason} for i in bad]
    if bad and on_bad_image == "error":
        first = bad[0]
        more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
        raise BadImageError(
            errors[first].path,
            f"{errors[first].reason} [{table.source(first)}]{more}; "
            f"data.on_bad_image=skip leaves bad files out and lists them in skipped_images.csv")
    if bad:
        log.warning("skipped %d bad image file(s) of %d (data.on_bad_image=skip), e.g. %s: %s",
                    len(bad), len(frame), skipped[0]["path"], skipped[0]["reason"])
    good_rows = [i for i, e in enumerate(errors) if e is None]
    try:
        hashes, _ = content_hashes([paths[i] for i in good_rows], table.root, workers=workers)
    except OSError as exc:
        raise BadImageError(getattr(exc, "filename", None) or "a data file",
                            f"cannot read file ({exc.strerror or exc})") from None
    frame = frame.copy()
    frame[LEGACY_FILE_KEY] = legacy  # what checkpoints written before hashed (datamodule.FINGERPRINT_KIND)
    for i, digest in zip(good_rows, hashes, strict=True):
        infos[i] = f"{infos[i]}:{digest}"
    frame[FILE_KEY] = infos
    good = np.array([e is None for e in errors], dtype=bool)
    return table.with_frame(frame[good]), skipped
