"""Embedding extraction overhead: `fashionlab.inference.embed.extract` (normalised embeddings and
class probabilities, copied out batch by batch) vs the bare model forward on the same pre-built
batches, with memory-format and torch.compile variants (CPU by default).

    python benchmarks/embed.py [--ckpt <checkpoint>] [--batches 10] [--repeats 5] [--compile] [--device cuda]
                               [override ...]

Without --ckpt the model is built from conf/train.yaml plus the overrides (quickstart settings:
EfficientNet-Lite0 with its bundled ImageNet weights, 36 px Fashion-MNIST). Prints a table and
writes benchmarks/results/embed.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from fashionlab.config_safety import DATA, safe_instantiate
from fashionlab.inference.checkpoint import load_checkpoint
from fashionlab.inference.embed import extract
from fashionlab.models.build import build_module
from fashionlab.training.run import prepare_config

ROOT = Path(__file__).resolve().parents[1]


def model_and_data(args: argparse.Namespace):
    if args.ckpt:
        loaded = load_checkpoint(args.ckpt)
        return loaded.module, safe_instantiate(loaded.cfg.data, str(loaded.path), DATA, key="data",
                                               _recursive_=False)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra.run.dir=/tmp/unused", *args.overrides],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # the config's ${hydra:...} paths resolve as under train.py
    prepare_config(cfg)
    datamodule = instantiate(cfg.data, _recursive_=False)
    datamodule.setup()
    module = build_module(cfg, datamodule.tasks)
    from fashionlab.models.backbones import create_backbone

    module.net.backbone.load_state_dict(create_backbone(**cfg.backbone).state_dict())
    return module.eval(), datamodule


def eval_loader(datamodule, split: str, batch_size: int) -> DataLoader:
    """evaluate.py's loader (fashionlab.evaluation.run.eval_loader) without importing the evaluation,
    which needs FAISS: the GPU session's first command runs this before FAISS is installed."""
    dataset = copy.copy(datamodule.splits[split])
    dataset.transform = datamodule.eval_transform()
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=datamodule.num_workers)


def synchronize(module) -> None:
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)


def bare(module, batches) -> float:
    """The forward alone, under torch.no_grad, on the same CPU batches moved to the model's device."""
    synchronize(module)
    started = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            images = batch["image"].to(module.device, non_blocking=True)
            module.net(images.contiguous(memory_format=module.memory_format))
    synchronize(module)
    return time.perf_counter() - started


def extraction(module, batches) -> float:
    started = time.perf_counter()
    # the same pre-built batches, one at a time (a plain list would read as one loader per batch)
    extract(module, DataLoader(batches, batch_size=None), progress=False)
    return time.perf_counter() - started


def measure(module, batches, repeats: int) -> dict:
    images = sum(len(b["image"]) for b in batches)
    bare(module, batches[:2])
    extraction(module, batches[:2])
    ratios, bare_rates, extract_rates = [], [], []
    for r in range(repeats):  # alternate which goes first: this VM's speed drifts within seconds
        order = (bare, extraction) if r % 2 == 0 else (extraction, bare)
        times = {fn.__name__: fn(module, batches) for fn in order}
        bare_rates.append(images / times["bare"])
        extract_rates.append(images / times["extraction"])
        ratios.append(extract_rates[-1] / bare_rates[-1])
    return {"bare_images_per_s": statistics.median(bare_rates),
            "extract_images_per_s": statistics.median(extract_rates),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--variants", default="all", choices=["all", "channels_last"],
                        help="channels_last: only the default memory format")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "embed.json")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    module, datamodule = model_and_data(args)
    module.to(args.device)
    datamodule.setup()
    loader = eval_loader(datamodule, "test", args.batch_size)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == args.batches:
            break
    variants = [("channels_last", torch.channels_last, False), ("contiguous", torch.contiguous_format, False)]
    if args.variants == "channels_last":
        variants = variants[:1]
    if args.compile:
        variants += [("channels_last + compile", torch.channels_last, True),
                     ("contiguous + compile", torch.contiguous_format, True)]
    eager_backbone = module.net.backbone
    rows = []
    for name, memory_format, compiled in variants:
        module.memory_format = memory_format
        module.net.to(memory_format=memory_format)
        module.net.backbone = torch.compile(eager_backbone) if compiled else eager_backbone
        row = {"variant": name, **measure(module, batches, args.repeats)}
        rows.append(row)
        print(row, flush=True)
    base = rows[0]["bare_images_per_s"]
    print(f"\n{sum(len(b['image']) for b in batches)} images in {len(batches)} batches on {args.device}, "
          f"{torch.get_num_threads()} threads")
    print("| variant | bare forward (img/s) | extract (img/s) | extract / bare (median, range) "
          "| bare vs channels_last eager |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['bare_images_per_s']:.0f} | {row['extract_images_per_s']:.0f} | "
              f"{row['ratio_median']:.3f} ({row['ratio_min']:.3f}-{row['ratio_max']:.3f}) | "
              f"{row['bare_images_per_s'] / base:.2f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
