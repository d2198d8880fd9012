"""Streamlit demo: upload a photo (or several for a style profile), see the predicted attributes
and the most similar catalogue items. Started by `fashionlab app --index EVAL_DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import streamlit as st

from fashionlab.errors import FashionlabError
from fashionlab.recommend.catalogue_io import open_index
from fashionlab.recommend.config import load_config
from fashionlab.recommend.profile import build_profile, rank_catalogue
from fashionlab.recommend.similar import similar_to_image
from fashionlab.recommend.webapp import UploadError, common_folder, public_text, read_upload, relative_paths

COLUMNS = 5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fashionlab app")
    parser.add_argument("--index", required=True)
    parser.add_argument("--ckpt")
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[])
    return parser.parse_args(argv)


@st.cache_resource(show_spinner="Loading the model and the catalogue...")
def load(index: str, ckpt: str | None, batch_size: int):
    return open_index(index, ckpt, batch_size=batch_size)


@st.cache_data(show_spinner=False)
def image_folder(index: str, ckpt: str | None, batch_size: int) -> str:
    """The catalogue's image folder: result paths are shown relative to it."""
    gallery = load(index, ckpt, batch_size)[0].gallery
    return common_folder(gallery["path"]) if "path" in gallery else ""


@st.cache_data(max_entries=512, show_spinner=False)
def item_image(index: str, ckpt: str | None, batch_size: int, item_id: int):
    return load(index, ckpt, batch_size)[0].image(item_id)


def _probability(value: float | list[float]) -> str:
    return ", ".join(f"{p:.3f}" for p in value) if isinstance(value, list) else f"{value:.3f}"


def show_results(args, batch_size: int, table: pd.DataFrame, second: str | None) -> None:
    with st.container(key="results"):
        columns = st.columns(COLUMNS)
        for i, row in enumerate(table.to_dict("records")):
            caption = f"#{row['rank']} id {row['id']} · {row['score']:.3f}"
            if second:
                caption += f" · {row[second]}"
            columns[i % COLUMNS].image(
                item_image(args.index, args.ckpt, batch_size, int(row["id"])), caption=caption, width=120
            )
    if "path" in table:
        base = image_folder(args.index, args.ckpt, batch_size)
        table = table.assign(path=relative_paths(table["path"], base))
    st.dataframe(table, hide_index=True)


def show_error(args, err: Exception) -> None:
    st.error(public_text(str(err), [f for f in (args.index, args.ckpt, args.config) if f]))


def main() -> None:
    args = parse_args(sys.argv[1:])
    st.set_page_config(page_title="fashionlab", layout="wide")
    st.title("fashionlab: similar items")
    try:
        cfg = load_config(args.config, args.set)
        batch_size = int(cfg.batch_size)
        catalogue, predictor = load(args.index, args.ckpt, batch_size)
    except FashionlabError as err:
        show_error(args, err)
        st.stop()
    size = len(catalogue.gallery)
    max_bytes = int(float(cfg.app.max_upload_mb) * 2**20)
    max_pixels = int(float(cfg.app.get("max_megapixels", 16)) * 1e6)
    k = st.sidebar.slider("k (results)", 1, min(int(cfg.app.max_k), size), min(int(cfg.app.k), size))
    same_category = st.sidebar.checkbox("same category only", value=False)
    st.sidebar.caption(f"catalogue: {Path(args.index).resolve().name}, {size} items · "
                       f"uploads up to {float(cfg.app.max_upload_mb):g} MB "
                       f"and {max_pixels / 1e6:g} megapixels")
    uploads = st.file_uploader("Upload a photo, or several for a style profile", accept_multiple_files=True)
    if not uploads:
        st.info("Upload an image to see its predicted attributes and similar catalogue items.")
        return
    if len(uploads) > int(cfg.app.max_files):
        st.error(f"{len(uploads)} files uploaded; at most {int(cfg.app.max_files)} at a time")
        return
    images, names = [], []
    for upload in uploads:
        try:
            images.append(read_upload(upload.name, upload.getvalue(), max_bytes, max_pixels,
                                      min_side=predictor.decode_min_side))
            names.append(upload.name)
        except UploadError as err:
            st.error(str(err))
    if not images:
        return
    label_task = predictor.tasks[0].name
    try:
        if len(images) == 1:
            preds = predictor.predict(images)  # the one model run: labels and the query embedding
            result = similar_to_image(
                predictor,
                catalogue,
                images[0],
                k,
                same_category=same_category,
                category=cfg.category_task,
                source=names[0],
                predictions=preds,
            )
            with st.container(key="query"):
                left, right = st.columns([1, 3])
                left.image(images[0], caption=names[0], width=160)
                right.subheader(f"Predicted: {preds.full_label(0) or result.query_labels[label_task]}")
                right.table(
                    pd.DataFrame(
                        [
                            {
                                "task": t.name,
                                "label": str(preds.labels[t.name][0]),
                                "probability": _probability(preds.confidence(t.name, 0)),
                            }
                            for t in predictor.tasks
                        ]
                    )
                )
            st.subheader(
                f"{k} most similar items" + (f" ({result.category} only)" if result.category else "")
            )
            show_results(args, batch_size, result.results, label_task)
        else:
            profile = build_profile(predictor, images)
            st.subheader(f"Style profile of {len(images)} images")
            st.table(
                pd.DataFrame(
                    [
                        {
                            "task": t.name,
                            "top classes": ", ".join(f"{c} {p:.2f}" for c, p in profile.top(t.name)),
                        }
                        for t in predictor.tasks
                    ]
                )
            )
            table = rank_catalogue(
                profile,
                catalogue,
                k,
                dict(cfg.profile.weights),
                cfg.profile.tasks,
                dict(cfg.profile.task_weights or {}),
            )
            st.subheader(f"{k} items that fit the profile")
            show_results(args, batch_size, table, "matched")
    except FashionlabError as err:
        show_error(args, err)


main()
