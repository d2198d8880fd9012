"""Wardrobe summary: the most common predicted categories in a folder of photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fashionlab.data.images import load_rgb
from fashionlab.errors import DataNotFoundError
from fashionlab.recommend.config import category_task
from fashionlab.recommend.grids import save_grid
from fashionlab.recommend.predict import Predictor, error_of, predict_folder


@dataclass
class Wardrobe:
    """`counts`: the top classes of `task` (columns: the task's name, count, share); `predictions`:
    one row per file; `errors`: unreadable files and their messages."""

    task: str
    counts: pd.DataFrame
    predictions: pd.DataFrame
    errors: list[tuple[str, str]]


def count_wardrobe(
    predictor: Predictor, folder: str | Path, top: int = 3, category: str | None = None, progress: bool = True
) -> Wardrobe:
    task = category_task(predictor.tasks, category)
    table = predict_folder(predictor, folder, progress=progress)
    errors = [(r["path"], error_of(r)) for r in table.to_dict("records") if error_of(r) is not None]
    readable = table[table["error"].isna()]
    if readable.empty:
        raise DataNotFoundError(f"{folder}: none of its {len(table)} files could be read as an image")
    counts = readable[task.name].value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], task.classes.index(kv[0])))[: max(1, top)]
    frame = pd.DataFrame(
        [{task.name: c, "count": int(n), "share": round(n / len(readable), 4)} for c, n in ordered]
    )
    return Wardrobe(task.name, frame, readable.reset_index(drop=True), errors)


def save_wardrobe_grids(
    wardrobe: Wardrobe, out: str | Path, per_category: int = 12, tile_size: int = 112, columns: int = 0
) -> list[Path]:
    """One grid per top category: `<out stem>_<category><suffix>` beside `out`."""
    out = Path(out)
    written = []
    for row in wardrobe.counts.to_dict("records"):
        label = row[wardrobe.task]
        items = wardrobe.predictions[wardrobe.predictions[wardrobe.task] == label].head(per_category)
        images = [load_rgb(p, min_side=tile_size) for p in items["path"]]  # thumbnails: reduced decoding
        captions = [
            f"{Path(p).name}\n{label} {prob:.2f}"
            for p, prob in zip(items["path"], items[f"{wardrobe.task}_prob"], strict=True)
        ]
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(label))
        written.append(
            save_grid(
                images,
                captions,
                out.with_name(f"{out.stem}_{safe}{out.suffix or '.png'}"),
                tile_size=tile_size,
                columns=columns,
            )
        )
    return written
