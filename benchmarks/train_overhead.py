"""Training-loop overhead: Lightning's training step vs a bare PyTorch loop, and the data loader
vs the training step, on the same model, batches and data (the quickstart settings by default).

    python benchmarks/train_overhead.py [--steps 30] [--warmup 5] [--repeats 6] [override ...]

Overrides are Hydra overrides of conf/train.yaml (e.g. data.image_size=64 backbone=resnet50
backbone.pretrained=false). Prints a table and writes benchmarks/results/train_overhead.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict

from fashionlab.training.run import build_datamodule, build_model, prepare_config

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(Callback):
    """Wall time from the first measured batch's start to the last batch's end."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def fresh_model(cfg, datamodule):
    torch.manual_seed(0)
    model = build_model(cfg, datamodule)
    model.net.backbone.requires_grad_(True)
    return model


def bare_loop(cfg, datamodule, batches, warmup):
    """The same model, loss, metric updates, optimizer and schedule in a hand-written loop."""
    model = fresh_model(cfg, datamodule)
    model.train()
    backbone_ids = {id(p) for p in model.net.backbone.parameters()}
    lr = float(model.optimizer_factory.keywords["lr"])
    optimizer = model.optimizer_factory([
        {"params": [p for p in model.net.parameters() if id(p) not in backbone_ids]},
        {"params": list(model.net.backbone.parameters()), "lr": lr * model.backbone_lr_scale},
    ])
    scheduler = model.scheduler_factory(optimizer, total_steps=len(batches))
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        logits = model(batch["image"])
        loss, _ = model.criterion(logits, batch["targets"])
        model.stage_metrics["train_metrics"].update(logits, batch["targets"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def lightning_loop(cfg, datamodule, batches, warmup):
    """The project's LightningModule under a Trainer, fed the same pre-built batches."""
    model = fresh_model(cfg, datamodule)
    timer = StepTimer(warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=len(batches), max_epochs=1,
                        limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, callbacks=[timer])
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return timer.end - timer.start


def loader_rate(datamodule, n_batches):
    loader = datamodule.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    images = 0
    for _ in range(n_batches):
        images += len(next(iterator)["image"])
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "outputs" / "benchmarks")
    prepare_config(cfg)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    batch_size = datamodule.batch_size
    iterator = iter(datamodule.train_dataloader())
    batches = [next(iterator) for _ in range(args.steps + args.warmup)]
    measured = args.steps * batch_size

    # Throughput on this kind of VM drifts by +-15% over seconds, so the two loops alternate
    # (B,L then L,B, ...) and the reported ratio is the median of the per-pair ratios.
    bare, lightning = [], []
    for repeat in range(args.repeats):
        order = [bare_loop, lightning_loop] if repeat % 2 == 0 else [lightning_loop, bare_loop]
        for loop in order:
            rate = measured / loop(cfg, datamodule, batches, args.warmup)
            (bare if loop is bare_loop else lightning).append(rate)
            gc.collect()
    ratios = [lt / b for lt, b in zip(lightning, bare, strict=True)]
    loader = loader_rate(datamodule, args.steps)
    result = {
        "backbone": cfg.backbone.name,
        "image_size": int(cfg.data.image_size),
        "batch_size": batch_size,
        "steps": args.steps,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "bare_loop_img_s": statistics.median(bare),
        "lightning_step_img_s": statistics.median(lightning),
        "lightning_vs_bare": statistics.median(ratios),
        "lightning_vs_bare_min": min(ratios),
        "lightning_vs_bare_max": max(ratios),
        "loader_img_s": loader,
        "loader_vs_step": loader / statistics.median(lightning),
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else
              f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
