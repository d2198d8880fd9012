"""The `fashionlab` command: argument parsing and printing only; the work is done in
fashionlab.recommend and fashionlab.experiments."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fashionlab.entrypoint import error_message
from fashionlab.errors import FashionlabError
from fashionlab.fileio import write_json

INDEX_HELP = ("evaluation directory (evaluate.py), or a training run folder: the newest evaluation in "
              "its eval/")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="settings file (default: conf/recommend/default.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set profile.weights.embedding=0.8",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionlab",
        description="Predict, search and recommend with a "
        "trained fashionlab checkpoint and its evaluation directory; compare and record runs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="labels and probabilities for every image in a folder")
    p.add_argument("folder")
    p.add_argument("--ckpt", required=True)
    p.add_argument("-o", "--output", help=".csv, .json or .txt (default: text on stdout)")

    p = sub.add_parser("similar", help="catalogue items most similar to an image")
    p.add_argument("query", nargs="?")
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--ckpt", help="checkpoint for the query (default: the one in the index's manifest)")
    p.add_argument("--random", action="store_true", help="a random catalogue item as the query")
    p.add_argument("--seed", type=int)
    p.add_argument("-k", type=int)
    p.add_argument("--same-category", action="store_true")
    p.add_argument("--category-task", help="task that defines the category (default: category / first task)")
    p.add_argument("-o", "--output", help="image grid (.png)")

    p = sub.add_parser("profile", help="rank the catalogue against the style of several images")
    p.add_argument("images", nargs="+")
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--ckpt")
    p.add_argument("-k", type=int)
    p.add_argument("--weights", nargs=2, type=float, metavar=("ATTRIBUTES", "EMBEDDING"))
    p.add_argument("-o", "--output", help="image grid (.png)")
    p.add_argument("--json", help="write the profile and ranking as JSON")

    p = sub.add_parser("wardrobe", help="most common predicted categories in a folder")
    p.add_argument("folder")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--top", type=int)
    p.add_argument("--category-task")
    p.add_argument("-o", "--output", help="grid file; one per category: <stem>_<category>.png")

    p = sub.add_parser("outfit", help="face images -> style -> catalogue items of that style")
    p.add_argument("faces", nargs="+", help="face image files or folders")
    p.add_argument("--style-ckpt", required=True)
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--items", type=int, help="items per face")
    p.add_argument("--style-task")
    p.add_argument("-o", "--output", help="text file, one line per face (default: stdout)")

    p = sub.add_parser("app", help="start the Streamlit demo")
    p.add_argument("--index", required=True, help=INDEX_HELP)
    p.add_argument("--ckpt")
    p.add_argument("--port", type=int)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")

    for name in ("predict", "similar", "profile", "wardrobe", "outfit", "app"):
        _common(sub.choices[name])

    p = sub.add_parser("compare", help="compare finished runs: table (.md, .csv) and bar chart")
    p.add_argument("runs", nargs="+", metavar="RUN_OR_MULTIRUN_DIR",
                   help="run folders (with metrics.json), multirun folders or sweep folders")
    p.add_argument("-o", "--output", help="folder for comparison.md/.csv/.png "
                   "(default: outputs/compare/<date_time>)")

    p = sub.add_parser("record", help="record an experiment: experiments/NAME/README.md and results")
    p.add_argument("name", help="folder name under experiments/")
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN_OR_MULTIRUN_DIR")
    p.add_argument("--command", action="append", default=[], dest="commands", metavar="COMMAND",
                   help="a command of the experiment, as run (repeat for several)")
    p.add_argument("--title")
    p.add_argument("--notes-file", help="markdown to include as the experiment's notes")
    p.add_argument("--into", default="experiments", help="parent folder (default: experiments)")
    p.add_argument("--force", action="store_true", help="rewrite an existing experiment folder")
    for name in ("compare", "record"):
        sub.choices[name].add_argument(
            "--sort", metavar="COLUMN[:min|max]", help="order by this column (e.g. retrieval/article/mAP@R; "
            "highest first unless :min) instead of the monitored metric")
    return parser


def _print_table(table: pd.DataFrame) -> None:
    with pd.option_context(
        "display.max_rows",
        None,
        "display.max_columns",
        None,
        "display.width",
        200,
        "display.max_colwidth",
        60,
    ):
        print(table.to_string(index=False))


def _predict(args, cfg) -> None:
    from fashionlab.recommend.predict import Predictor, predict_folder, prediction_lines, write_predictions

    predictor = Predictor.from_checkpoint(args.ckpt, batch_size=cfg.batch_size)
    table = predict_folder(predictor, args.folder, progress=not args.quiet)
    errors = int(table["error"].notna().sum())
    if args.output:
        out = write_predictions(table, predictor.tasks, args.output)
        print(f"{len(table)} files, {len(table) - errors} predicted, {errors} unreadable -> {out}")
    else:
        print("\n".join(prediction_lines(table, predictor.tasks)))
    for row in table[table["error"].notna()].to_dict("records"):
        print(f"unreadable: {row['error']}", file=sys.stderr)


def _similar(args, cfg) -> None:
    from fashionlab.recommend.catalogue_io import label_text, open_index
    from fashionlab.recommend.similar import random_item, save_similar_grid, similar_to_image, similar_to_item

    if bool(args.query) == bool(args.random):
        raise FashionlabError("give either a query image or --random")
    k = args.k or int(cfg.similar.k)
    category = args.category_task or cfg.category_task
    if args.random:
        from fashionlab.retrieval.catalogue import Catalogue

        catalogue = Catalogue.load(args.index)
        result = similar_to_item(
            catalogue, random_item(catalogue, args.seed), k, args.same_category, category
        )
    else:
        from fashionlab.recommend.predict import query_file, read_query

        query_file(args.query)  # a missing query fails before the models load
        catalogue, predictor = open_index(args.index, args.ckpt, batch_size=cfg.batch_size)
        image = read_query(args.query, min_side=predictor.decode_min_side)
        result = similar_to_image(predictor, catalogue, image, k, args.same_category, category, args.query)
    ident = f" (catalogue id {result.query_id})" if result.query_id is not None else ""
    print(f"query: {result.query_source}{ident}  {label_text(result.query_labels)}")
    _print_table(result.results)
    if args.output:
        save_similar_grid(
            result, catalogue, args.output, tile_size=cfg.grid.tile_size, columns=cfg.grid.columns
        )
        print(f"grid -> {args.output}")


def _profile(args, cfg) -> None:
    from fashionlab.recommend.catalogue_io import open_index
    from fashionlab.recommend.grids import save_grid
    from fashionlab.recommend.predict import query_file, read_query
    from fashionlab.recommend.profile import build_profile, rank_catalogue

    for path in args.images:  # a missing image fails before the models load
        query_file(path)
    catalogue, predictor = open_index(args.index, args.ckpt, batch_size=cfg.batch_size)
    images = [read_query(p, min_side=predictor.decode_min_side) for p in args.images]
    weights = dict(cfg.profile.weights)
    if args.weights:
        weights = {"attributes": args.weights[0], "embedding": args.weights[1]}
    profile = build_profile(predictor, images)
    table = rank_catalogue(
        profile,
        catalogue,
        args.k or int(cfg.profile.k),
        weights,
        cfg.profile.tasks,
        dict(cfg.profile.task_weights or {}),
    )
    print(f"style profile of {profile.num_images} images (fashion vector, top classes per task):")
    for task in predictor.tasks:
        print(f"  {task.name}: " + ", ".join(f"{c} {p:.2f}" for c, p in profile.top(task.name)))
    print(
        f"ranking: {weights['attributes']:g} x attribute agreement"
        f" + {weights['embedding']:g} x cosine similarity"
    )
    _print_table(table)
    if args.output:
        from fashionlab.recommend.similar import result_captions

        save_grid(
            list(images) + [catalogue.image(int(i)) for i in table["id"]],
            [f"liked {i + 1}" for i in range(len(images))] + result_captions(table, predictor.tasks[0].name),
            args.output,
            tile_size=cfg.grid.tile_size,
            columns=cfg.grid.columns,
        )
        print(f"grid -> {args.output}")
    if args.json:
        write_json(args.json, {**profile.as_dict(), "weights": weights, "results": table})


def _wardrobe(args, cfg) -> None:
    from fashionlab.recommend.predict import Predictor
    from fashionlab.recommend.wardrobe import count_wardrobe, save_wardrobe_grids

    predictor = Predictor.from_checkpoint(args.ckpt, batch_size=cfg.batch_size)
    wardrobe = count_wardrobe(
        predictor,
        args.folder,
        top=args.top or int(cfg.wardrobe.top),
        category=args.category_task or cfg.category_task,
        progress=not args.quiet,
    )
    print(f"{len(wardrobe.predictions)} garments, top {len(wardrobe.counts)} by {wardrobe.task}:")
    _print_table(wardrobe.counts)
    for _, error in wardrobe.errors:
        print(f"unreadable: {error}")
    if args.output:
        for path in save_wardrobe_grids(
            wardrobe,
            args.output,
            per_category=int(cfg.wardrobe.per_category),
            tile_size=cfg.grid.tile_size,
            columns=cfg.grid.columns,
        ):
            print(f"grid -> {path}")


def _outfit(args, cfg) -> None:
    from fashionlab.recommend.outfit import outfit_lines, recommend_outfits
    from fashionlab.recommend.predict import Predictor, gather_files
    from fashionlab.retrieval.catalogue import Catalogue

    files = gather_files(args.faces)
    predictor = Predictor.from_checkpoint(args.style_ckpt, batch_size=cfg.batch_size)
    catalogue = Catalogue.load(args.index)
    outfits = recommend_outfits(
        predictor,
        catalogue,
        files,
        cfg.outfit.styles,
        items=args.items or int(cfg.outfit.items_per_face),
        style_task=args.style_task or cfg.outfit.style_task,
        seed=int(cfg.outfit.seed),
        progress=not args.quiet,
    )
    print("catalogue clusters:")
    _print_table(outfits.clusters)
    lines = outfit_lines(outfits)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("".join(line + "\n" for line in lines))
        print(f"{len(lines)} faces -> {args.output}")
    else:
        print("\n".join(lines))


def _app(args, cfg) -> None:
    from fashionlab.recommend.webapp import run_server, streamlit_command
    from fashionlab.retrieval.manifest import read_manifest

    read_manifest(args.index)
    command = streamlit_command(
        args.index, args.ckpt, args.config, args.set, args.port, float(cfg.app.max_upload_mb),
        host=args.host,
    )
    run_server(command)


def _compare(args) -> None:
    from fashionlab.experiments.compare import compare

    out = args.output or f"outputs/compare/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    comparison = compare(args.runs, out, args.sort)
    _report_skipped(comparison.skipped)
    print(f"{len(comparison.runs)} runs compared -> " + ", ".join(str(p) for p in comparison.files.values()))


def _record(args) -> None:
    from fashionlab.experiments.record import record

    argv = [args.name, "--runs", *args.runs, *[a for c in args.commands for a in ("--command", c)]]
    argv += [a for flag, value in (("--title", args.title), ("--notes-file", args.notes_file),
                                   ("--sort", args.sort))
             if value for a in (flag, value)]
    out = record(args.name, args.runs, args.commands, args.title, args.notes_file, args.into,
                 args.force, argv, args.sort)
    print(f"experiment recorded -> {out / 'README.md'}")


def _index_folder(index: str) -> str:
    """`--index` as given, or the newest evaluation inside a run folder's eval/ (said on stderr)."""
    from fashionlab.recommend.catalogue_io import find_index

    folder, found = find_index(index)
    if found:
        print(f"index: {folder} (the newest of {len(found)} evaluation(s) in {Path(index) / 'eval'})",
              file=sys.stderr)
    return str(folder)


def _report_skipped(skipped: list[Path]) -> None:
    from fashionlab.experiments.runs import why_skipped

    for folder in skipped:
        print(f"skipped ({why_skipped(folder)}): {folder}", file=sys.stderr)


EXPERIMENT_COMMANDS = {"compare": _compare, "record": _record}

COMMANDS = {
    "predict": _predict,
    "similar": _similar,
    "profile": _profile,
    "wardrobe": _wardrobe,
    "outfit": _outfit,
    "app": _app,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in EXPERIMENT_COMMANDS:
            EXPERIMENT_COMMANDS[args.command](args)
            return 0
        from fashionlab.recommend.config import load_config

        cfg = load_config(args.config, args.set)
        if getattr(args, "index", None):
            args.index = _index_folder(args.index)
        COMMANDS[args.command](args, cfg)
    except FashionlabError as err:
        print(f"fashionlab {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
