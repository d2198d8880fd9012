"""Predictions for image files and folders with a trained checkpoint (inference.predictor):
tables of labels and probabilities, written as .csv, .json or .txt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fashionlab.data.images import load_rgb
from fashionlab.errors import ConfigError, DataNotFoundError, FashionlabError
from fashionlab.fileio import write_json
from fashionlab.inference.predictor import Predictions, Predictor  # noqa: F401  (re-exported)
from fashionlab.tasks import TaskSpec

OUTPUT_FORMATS = (".csv", ".json", ".txt")


def list_files(folder: str | Path) -> list[Path]:
    """Every non-hidden file under `folder` (recursively), sorted; an error when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} is not a folder")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataNotFoundError(f"{folder} is empty: no image files to read")
    return files


def gather_files(items: Sequence[str | Path]) -> list[Path]:
    """Files and every file under folders, in the given order; an error when none remains."""
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files.extend(list_files(item))
        elif item.is_file():
            files.append(item)
        else:
            raise DataNotFoundError(f"{item} does not exist")
    if not files:
        raise DataNotFoundError("no image files given")
    return files


def query_file(path: str | Path) -> Path:
    """The query image's path; a clear error when it does not exist (checked before loading models)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"query image {path} does not exist")
    return path


def read_query(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """A query image as HxWx3 uint8; a clear error when it is missing or unreadable. `min_side`:
    load_rgb's reduced decoding (pass the predictor's `decode_min_side`)."""
    return load_rgb(query_file(path), min_side=min_side)


def read_images(
    files: Sequence[Path], progress: bool = True, min_side: int | None = None
) -> tuple[list[np.ndarray], list[str | None]]:
    """Decode files with load_rgb (`min_side`: the predictor's `decode_min_side`); an unreadable file
    gives None and its error message."""
    images: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for path in tqdm(files, desc="reading", unit="img", disable=not progress, leave=False):
        try:
            images.append(load_rgb(path, min_side=min_side))
            errors.append(None)
        except (FashionlabError, OSError, ValueError) as err:
            images.append(None)
            message = str(err) or type(err).__name__
            errors.append(message if str(path) in message else f"{path}: {message}")
    return images, errors


def predict_files(
    predictor: Predictor, files: Sequence[Path], progress: bool = True, chunk: int = 256
) -> pd.DataFrame:
    """One row per file: path, error (None when readable), full_label (`parent-child`, for a model
    with a task hierarchy only), and per task `<task>` and `<task>_prob` (multilabel: `|`-joined
    names and probabilities)."""
    hierarchical = any(t.parent for t in predictor.tasks)
    rows: list[dict] = []
    bar = tqdm(total=len(files), desc="predicting", unit="img", disable=not progress)
    for start in range(0, len(files), chunk):
        part = list(files[start : start + chunk])
        images, errors = read_images(part, progress=False, min_side=predictor.decode_min_side)
        good = [i for i, im in enumerate(images) if im is not None]
        preds = predictor.predict([images[i] for i in good]) if good else None
        where = {i: n for n, i in enumerate(good)}
        for i, path in enumerate(part):
            row: dict = {"path": str(path), "error": errors[i]}
            if hierarchical:
                row["full_label"] = None
            if i in where:
                n = where[i]
                if hierarchical:
                    row["full_label"] = preds.full_label(n)
                for t in predictor.tasks:
                    label, prob = preds.labels[t.name][n], preds.confidence(t.name, n)
                    if t.kind == "multilabel":
                        row[t.name] = "|".join(label)
                        row[f"{t.name}_prob"] = "|".join(f"{p:.4f}" for p in prob)
                    else:
                        row[t.name], row[f"{t.name}_prob"] = label, round(prob, 6)
                    row[f"_probs_{t.name}"] = preds.probs[t.name][n]
            rows.append(row)
        bar.update(len(part))
    bar.close()
    return pd.DataFrame(rows)


def predict_folder(predictor: Predictor, folder: str | Path, progress: bool = True) -> pd.DataFrame:
    """`predict_files` over every file under `folder` (recursively)."""
    return predict_files(predictor, list_files(folder), progress=progress)


def error_of(row: dict) -> str | None:
    """The row's error message, None for a readable file (pandas may store None as NaN)."""
    error = row.get("error")
    return error if isinstance(error, str) else None


def public_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table[[c for c in table.columns if not c.startswith("_")]]


def write_predictions(table: pd.DataFrame, tasks: list[TaskSpec], out: str | Path) -> Path:
    """Write predictions as .csv (one row per file), .json (with full distributions) or .txt."""
    out = Path(out)
    if out.suffix not in OUTPUT_FORMATS:
        raise ConfigError(
            f"output {out}: unknown format {out.suffix!r}; use one of {', '.join(OUTPUT_FORMATS)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        public_columns(table).to_csv(out, index=False)
    elif out.suffix == ".json":
        write_json(out, prediction_records(table, tasks))
    else:
        out.write_text("".join(line + "\n" for line in prediction_lines(table, tasks)))
    return out


def prediction_records(table: pd.DataFrame, tasks: list[TaskSpec]) -> list[dict]:
    records = []
    for row in table.to_dict("records"):
        record: dict = {"path": row["path"], "error": error_of(row)}
        if record["error"] is None:
            if "full_label" in row:
                record["full_label"] = row["full_label"]
            record["tasks"] = {
                t.name: {
                    "label": row[t.name],
                    "prob": row[f"{t.name}_prob"],
                    "probs": {
                        c: round(float(p), 6) for c, p in zip(t.classes, row[f"_probs_{t.name}"], strict=True)
                    },
                }
                for t in tasks
            }
        records.append(record)
    return records


def prediction_lines(table: pd.DataFrame, tasks: list[TaskSpec]) -> list[str]:
    lines = []
    for row in table.to_dict("records"):
        if error_of(row) is not None:
            lines.append(f"{row['path']}\tERROR\t{row['error']}")
            continue
        parts = [f"{t.name}={row[t.name]} ({row[f'{t.name}_prob']})" for t in tasks]
        full = f"{row['full_label']}\t" if "full_label" in row else ""
        lines.append(f"{row['path']}\t{full}" + " ".join(parts))
    return lines
