"""Data-loader throughput per core on full-size photos, against the model's own train step.

    nice -n 5 python benchmarks/loader.py [--n 1000] [--out DIR] [--quick] [override ...]

Writes (or reuses) `--n` photo-like 1800x2400 JPEGs at quality 90 in the Kaggle Fashion Product
Images layout (benchmarks/photo_data.py), composes `data=fashion_products` on them and measures,
in this process on one core (torch and OpenCV at one thread: what one DataLoader worker gets):

- per path of PATHS, the train pipeline's images/s at data.image_size (224): the train split's
  `__getitem__`, i.e. decoding plus the albumentations train transform (random resized crop,
  flip, normalise, to tensor). `plain`: full decoding (data.preprocess.decode=full), as before;
  `reduced`: decode=reduced (DCT-scaled JPEG decoding, docs/preprocessing.md); `cache`: the items
  read back from a local prepared cache (data.cache, raw uint8 storage, the default) through
  litdata's StreamingDataset with the same train transform; `cache-jpeg`: the same with
  data.cache.format=jpeg (the caches are built on first use in <photos>/cache; their size on disk
  and build time are reported). Another path is one more entry in PATHS (a name -> a function
  from the base overrides to the dataset it reads);
- the model's train step images/s (forward, backward, optimizer step; --batch images) for each
  --backbones entry, pretrained=false, on CPU after --warmup steps.

Prints a table and writes benchmarks/results/loader/<stamp>/result.json (git-ignored). The last
line is `cache/plain per-core speed-up: ..., reduced-decode/plain: ..., cached images/s per core:
...` (`n/a` while PATHS has no `cache`). Overrides are Hydra overrides of conf/train.yaml.
`--quick`: 40 photos, one round, 2 steps (1 warm-up) of batch 4 (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict
from torch.utils.data import Dataset, default_collate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_data import photos_present, write_kaggle_photos  # noqa: E402

from fashionlab.training.run import build_datamodule, build_model, prepare_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "loader"
SIZE = (1800, 2400)
QUALITY = 90


def compose_train(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with `overrides`, its derived settings filled (prepare_config)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "outputs" / "benchmarks")
    return prepare_config(cfg)


def train_split(overrides: list[str]) -> Dataset:
    """The train split of the data module the overrides compose (its train transform applied)."""
    datamodule = build_datamodule(compose_train(overrides))
    datamodule.setup()
    return datamodule.splits["train"]


#: format -> {"bytes": size on disk, "build_seconds": ...} of the caches the `cache*` paths built.
CACHES: dict[str, dict[str, Any]] = {}


def data_root(overrides: list[str]) -> Path:
    return Path(next(o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")))


def cached_train_split(base: list[str], image_format: str) -> Dataset:
    """The train split read back from a local prepared cache (built on first use, in
    <photos>/cache, reduced decoding): litdata's StreamingDataset with the train transform."""
    overrides = [*base, "data.preprocess.decode=reduced", f"data.cache.dir={data_root(base) / 'cache'}",
                 f"data.cache.format={image_format}"]
    datamodule = build_datamodule(compose_train(overrides))
    datamodule.setup()
    record = datamodule.cache_record
    folder = data_root(base) / "cache" / record.key
    CACHES[image_format] = {
        "key": record.key, "build_seconds": record.data.get("build_seconds"),
        "bytes": sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
        "images": sum(record.data["counts"].values()), "short_side": record.data["short_side"]}
    loader = datamodule.cached_loader("train", datamodule.splits["train"].transform, train=True,
                                      batch_size=1, persistent=False)
    return loader.dataset


#: path name -> the train dataset it reads, from the base overrides (data=fashion_products on the
#: generated photos). Each is measured on the same items in the same order (the cached ones in
#: the cache's stored order, the same items).
PATHS: dict[str, Callable[[list[str]], Dataset]] = {
    "plain": lambda base: train_split([*base, "data.preprocess.decode=full"]),
    "reduced": lambda base: train_split([*base, "data.preprocess.decode=reduced"]),
    "cache": lambda base: cached_train_split(base, "raw"),
    "cache-jpeg": lambda base: cached_train_split(base, "jpeg"),
}


def one_core() -> None:
    """What a DataLoader worker process gets: one thread for torch and for OpenCV."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def items_per_second(dataset: Dataset, items: int, warmup: int = 2) -> dict[str, float]:
    """`dataset[i]` for the first `items` items after `warmup` untimed ones, in this process."""
    count = min(items, len(dataset))
    for i in range(min(warmup, count)):
        dataset[i]
    start = time.perf_counter()
    for i in range(count):
        dataset[i]
    seconds = time.perf_counter() - start
    return {"items": count, "seconds": round(seconds, 3), "images_per_s": count / seconds}


def train_step_rate(base: list[str], backbone: str, batch: list[dict], steps: int,
                    warmup: int) -> dict[str, float]:
    """Forward, loss, backward and optimizer step of the project's model on `batch`, images/s."""
    cfg = compose_train([*base, f"backbone={backbone}", "backbone.pretrained=false"])
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule)
    model.net.backbone.requires_grad_(True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, targets = batch["image"], batch["targets"]
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss, _ = model.criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    return {"batch": len(images), "steps": steps, "seconds": round(seconds, 3),
            "images_per_s": steps * len(images) / seconds}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ratio(results: dict[str, Any], top: str, bottom: str) -> float | None:
    paths = results["paths"]
    if top in paths and bottom in paths:
        return paths[top]["images_per_s"] / paths[bottom]["images_per_s"]
    return None


def final_line(results: dict[str, Any]) -> str:
    """`cache/plain per-core speed-up: N.Nx, reduced-decode/plain: N.Nx, cached images/s per core: N`."""
    def times(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}x"

    cache = results["paths"].get("cache")
    cached = "n/a" if cache is None else f"{cache['images_per_s']:.0f}"
    return (f"cache/plain per-core speed-up: {times(ratio(results, 'cache', 'plain'))}, "
            f"reduced-decode/plain: {times(ratio(results, 'reduced', 'plain'))}, "
            f"cached images/s per core: {cached}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="photos to generate (default 1000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="photo folder (default benchmarks/results/loader/photos-<n>; reused if present)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where <stamp>/result.json goes")
    parser.add_argument("--items", type=int, default=None, help="items per path (default: the train split)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the items per path, alternating")
    parser.add_argument("--backbones", nargs="*", default=["resnet50", "efficientnet_lite0"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="40 photos, one round, 2 steps of batch 4")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.items, args.rounds, args.batch, args.steps, args.warmup = 40, 40, 1, 4, 1, 1
    args.out = args.out or RESULTS / f"photos-{args.n}"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    one_core()
    load_before = os.getloadavg()
    started = time.perf_counter()
    if photos_present(args.out, args.n, SIZE, QUALITY):
        print(f"photos: reusing {args.n} in {args.out}")
    else:
        print(f"photos: writing {args.n} {SIZE[0]}x{SIZE[1]} JPEGs (quality {QUALITY}) to {args.out}")
        write_kaggle_photos(args.out, args.n, SIZE, QUALITY)
    generated = time.perf_counter() - started
    base = ["data=fashion_products", f"data.root={args.out}", "data.num_workers=0", "logger=none",
            "backbone=resnet50", "backbone.pretrained=false", "data.balance.min_count=2",
            *args.overrides]
    results: dict[str, Any] = {
        "stamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv),
        "cpu": cpu_name(), "cores_used": 1, "rounds": args.rounds,
        "load_avg_before": [round(v, 2) for v in load_before],
        "photos": {"n": args.n, "size": list(SIZE), "quality": QUALITY, "folder": str(args.out),
                   "seconds_to_write": round(generated, 1)},
        "paths": {}, "train_step": {},
    }
    datasets = {name: build(base) for name, build in PATHS.items()}
    first = next(iter(datasets.values()))
    results["image_size"] = int(first[0]["image"].shape[-1])
    # Throughput on a shared machine drifts over seconds: the paths alternate over --rounds
    # (A B C, then C B A, ...) and each path's rate is its items over its summed time.
    for round_ in range(args.rounds):
        names = list(datasets) if round_ % 2 == 0 else list(reversed(datasets))
        for name in names:
            rate = items_per_second(datasets[name], args.items or len(datasets[name]))
            total = results["paths"].setdefault(name, {"items": 0, "seconds": 0.0})
            total["items"] += rate["items"]
            total["seconds"] = round(total["seconds"] + rate["seconds"], 3)
            total["images_per_s"] = total["items"] / total["seconds"]
            print(f"{name:>10}: {rate['images_per_s']:7.1f} images/s per core ({rate['items']} items, "
                  f"round {round_ + 1})", flush=True)
    batch = default_collate([first[i % len(first)] for i in range(args.batch)])
    for backbone in args.backbones:
        results["train_step"][backbone] = train_step_rate(base, backbone, batch, args.steps, args.warmup)
        print(f"{backbone:>18} train step: {results['train_step'][backbone]['images_per_s']:7.2f} "
              f"images/s on one core", flush=True)
    results["ratios"] = {"reduced/plain": ratio(results, "reduced", "plain"),
                         "cache/plain": ratio(results, "cache", "plain"),
                         "cache-jpeg/plain": ratio(results, "cache-jpeg", "plain")}
    results["caches"] = CACHES
    results["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
    out = args.results / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"result: {out / 'result.json'}")
    print(final_line(results))
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{results['cpu']}, one core, load average {results['load_avg_before'][0]:.2f} "
          f"-> {results['load_avg_after'][0]:.2f}; {results['photos']['n']} photos "
          f"{results['photos']['size'][0]}x{results['photos']['size'][1]} q{results['photos']['quality']}, "
          f"{results['image_size']} px")
    plain = results["paths"].get("plain", {}).get("images_per_s")
    print(f"{'what':<34}{'images/s per core':>18}{'vs plain':>10}")
    for name, row in results["paths"].items():
        versus = f"{row['images_per_s'] / plain:.2f}x" if plain else ""
        print(f"{'loader: ' + name:<34}{row['images_per_s']:>18.1f}{versus:>10}")
    for name, row in results["train_step"].items():
        print(f"{'train step: ' + name + ' b' + str(row['batch']):<34}{row['images_per_s']:>18.2f}")
    for fmt, info in results.get("caches", {}).items():
        print(f"cache {fmt}: {info['bytes'] / 2**20:.0f} MiB for {info['images']} images "
              f"({info['bytes'] / max(1, info['images']) / 1024:.0f} KiB each, short side "
              f"{info['short_side']} px), built in {info['build_seconds']} s")


if __name__ == "__main__":
    main()
