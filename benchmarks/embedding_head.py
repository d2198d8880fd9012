"""Cost of the retrieval embedding head: the training step with `embedding=<loss>` against the same
model without it (`embedding=none`), on the same batches (the quickstart settings by default).

    python benchmarks/embedding_head.py [--losses arcface multi_similarity] [--steps 20] [--warmup 3]
                                        [--repeats 5] [override ...]

Overrides are Hydra overrides of conf/train.yaml (e.g. data.batch_size=64 embedding.dim=256).
Each step is forward, the task losses (+ the metric loss), backward and the optimizer step, with
the backbone trainable. The two models step in turn on each batch (A,B then B,A, ...); the
reported ratio is the median over repeats of median step time with / without the head. Prints a
table and writes benchmarks/results/embedding_head.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from fashionlab.training.run import build_datamodule, build_model, prepare_config

ROOT = Path(__file__).resolve().parents[1]


def config(overrides: list[str]):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(ROOT / "outputs" / "benchmarks")
    return prepare_config(cfg)


class Variant:
    """One model (built once, backbone trainable) with its own optimizer groups
    (configure_optimizers without the schedule); `step` times one optimizer step."""

    def __init__(self, cfg, datamodule) -> None:
        torch.manual_seed(0)
        self.model = build_model(cfg, datamodule)
        self.model.net.backbone.requires_grad_(True)
        self.model.scheduler_factory = None
        self.optimizer = self.model.configure_optimizers()
        self.model.train()
        self.times: list[float] = []

    def step(self, batch: dict, record: bool) -> None:
        model, metric = self.model, self.model.metric_loss
        start = time.perf_counter()
        images = batch["image"].contiguous(memory_format=model.memory_format)
        features, logits = model.net.features_and_logits(images)
        loss, _ = model.criterion(logits, batch["targets"])
        if metric is not None:
            loss = loss + metric.weight * metric(model.net.embedding(features), batch["targets"][metric.task])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if record:
            self.times.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["arcface", "multi_similarity"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    base = config(["embedding=none", *args.overrides])
    datamodule = build_datamodule(base)
    datamodule.setup()
    iterator = iter(datamodule.train_dataloader())
    batches = [next(iterator) for _ in range(args.steps + args.warmup)]

    rows = []
    for loss in args.losses:
        cfg = config([f"embedding={loss}", *args.overrides])
        plain, head = Variant(base, datamodule), Variant(cfg, datamodule)
        # Step by step, alternating which variant goes first: the shared CPU's speed drifts over
        # seconds, so each pair of steps sees the same conditions; ratios of per-repeat medians.
        ratios = []
        for repeat in range(args.repeats):
            plain.times, head.times = [], []
            for i, batch in enumerate(batches):
                pair = (plain, head) if (i + repeat) % 2 == 0 else (head, plain)
                for variant in pair:
                    variant.step(batch, record=i >= args.warmup)
            ratios.append(statistics.median(head.times) / statistics.median(plain.times))
            gc.collect()
        rows.append({
            "loss": loss, "dim": int(cfg.embedding.dim),
            "without_img_s": datamodule.batch_size / statistics.median(plain.times),
            "with_img_s": datamodule.batch_size / statistics.median(head.times),
            "step_time_ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
        })
    result = {
        "backbone": base.backbone.name, "image_size": int(base.data.image_size),
        "batch_size": datamodule.batch_size, "steps": args.steps, "warmup": args.warmup,
        "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
        "overrides": args.overrides, "results": rows,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "embedding_head.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['backbone']} at {result['image_size']} px, batch {result['batch_size']}, "
          f"{args.steps} steps x {args.repeats} repeats, {result['torch_threads']} threads")
    print(f"{'loss':<18} {'dim':>4} {'without img/s':>14} {'with img/s':>11} {'time ratio':>10} "
          f"{'min-max':>12}")
    for r in rows:
        print(f"{r['loss']:<18} {r['dim']:>4} {r['without_img_s']:>14.1f} {r['with_img_s']:>11.1f} "
              f"{r['step_time_ratio']:>10.3f} {r['ratio_min']:>5.3f}-{r['ratio_max']:.3f}")


if __name__ == "__main__":
    main()
