"""timm's own train.py (benchmarks/third_party/timm/train.py, unchanged) on the in-memory synthetic
images of this project's `data=synthetic`, timed over the same window as benchmarks/gpu_speed.py times
this project's train.py: from the start of training batch `--warmup` to the end of the epoch's last
training batch (device synchronised at both ends).

    python benchmarks/timm_synthetic.py --result timm.json [--warmup 10] [--distinct 512] [--train-length N]
        [--eval-length M] [--num-classes 1000] [--image-size 224] [--seed 42] -- <timm train.py arguments>

timm.data.create_dataset is replaced by the synthetic dataset (items: already normalised float
tensors, so run train.py with --no-prefetcher) and the training loader is wrapped by the timer;
nothing else of train.py changes. Writes {"images", "seconds", "images_per_s", "batches"} to --result.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fashionlab.data.readers.synthetic import SyntheticDataset, synthetic_arrays

TRAIN_PY = Path(__file__).resolve().parent / "third_party" / "timm" / "train.py"


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class TimedLoader:
    """Iterates the wrapped loader; times batches `warmup`.. to the end (what the loop consumed)."""

    def __init__(self, loader: Any, warmup: int, record: dict) -> None:
        self.loader, self.warmup, self.record = loader, warmup, record

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self):
        images, started = 0, None
        for index, batch in enumerate(self.loader):
            if index == self.warmup:
                synchronize()
                started = time.perf_counter()
            if started is not None:
                images += int(batch[0].shape[0])
            yield batch
        synchronize()
        if started is not None and images:
            seconds = time.perf_counter() - started
            self.record.update(images=images, seconds=seconds, images_per_s=images / seconds,
                               batches=len(self.loader))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--distinct", type=int, default=512)
    parser.add_argument("--train-length", type=int, default=25600)
    parser.add_argument("--eval-length", type=int, default=512)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=42, help="the data seed (fashionlab: data.seed = seed)")
    args, timm_args = parser.parse_known_args()
    timm_args = [a for a in timm_args if a != "--"]

    import timm.data

    images, labels = synthetic_arrays(args.distinct, args.image_size, args.num_classes, args.seed)
    record: dict = {}
    create_loader = timm.data.create_loader

    def create_dataset(name: str, *_, is_training: bool = False, **__) -> SyntheticDataset:
        length = args.train_length if is_training else args.eval_length
        return SyntheticDataset(images, labels, length, pairs=True)

    def timed_create_loader(dataset: Any, *a: Any, **kw: Any) -> Any:
        loader = create_loader(dataset, *a, **kw)
        return TimedLoader(loader, args.warmup, record) if kw.get("is_training") else loader

    timm.data.create_dataset = create_dataset
    timm.data.create_loader = timed_create_loader
    sys.argv = [str(TRAIN_PY), *timm_args]
    try:
        runpy.run_path(str(TRAIN_PY), run_name="__main__")
    finally:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps({"timm_version": timm.__version__, **record}, indent=2) + "\n")
    if not record:
        sys.exit("timm_synthetic: the training loader ran fewer batches than --warmup")


if __name__ == "__main__":
    main()
