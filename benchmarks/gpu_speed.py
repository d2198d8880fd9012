"""Training throughput of this project's train.py against timm's own train.py, same model, batch,
resolution, precision, channels-last and in-memory synthetic data (`data=synthetic`: the loader only
batches ready tensors), each in a fresh process; then evaluation's embedding extraction against a
bare torch.no_grad forward (benchmarks/embed.py). Stage 3 of benchmarks/gpu_session.sh.

    python benchmarks/gpu_speed.py --out DIR [--device cuda] [--model resnet50] [--image-size 224]
        [--batch-size 256] [--steps 100] [--warmup 10] [--workers 8] [--num-classes 1000]

Both loops are timed over the same window: from the start of training batch `--warmup` to the end of
the epoch's last training batch, device synchronised at both ends. Writes DIR/speed.json (the ratio
train.py / timm is the headline figure) and DIR/embed.json; logs go to DIR/*.log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def window_timer(warmup: int):
    """A Lightning callback timing training batches `warmup`.. to the end of the last one."""
    import torch
    from lightning.pytorch.callbacks import Callback

    def sync(module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    class WindowTimer(Callback):
        def __init__(self) -> None:
            self.started: float | None = None
            self.record: dict = {}
            self.images = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == warmup:
                sync(pl_module)
                self.started = time.perf_counter()
            if self.started is not None:
                self.images += int(batch["image"].shape[0])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.started is not None and batch_idx == trainer.num_training_batches - 1:
                sync(pl_module)
                seconds = time.perf_counter() - self.started
                self.record = {"images": self.images, "seconds": seconds,
                               "images_per_s": self.images / seconds, "batches": batch_idx + 1}

    return WindowTimer()


def backbone(args: argparse.Namespace) -> list[str]:
    if args.model == "resnet50":
        return ["backbone=resnet50"]
    return ["backbone=timm", f"backbone.name={args.model}"]


def fashionlab_overrides(args: argparse.Namespace, run_dir: Path) -> list[str]:
    model = backbone(args)
    device = (["trainer=gpu", "data.pin_memory=true"] if args.device == "cuda"
              else ["trainer=cpu", "trainer.precision=bf16-mixed"])
    return [*model, *device, "data=synthetic", "backbone.pretrained=false",
            f"data.image_size={args.image_size}",
            f"data.num_classes={args.num_classes}", f"data.distinct={args.distinct}",
            f"data.train_length={args.steps * args.batch_size}", f"data.eval_length={args.batch_size}",
            f"data.batch_size={args.batch_size}", f"data.eval_batch_size={args.batch_size}",
            f"data.num_workers={args.workers}", "model.channels_last=true", "training.freeze_epochs=0",
            "optimizer.lr=1e-3", "optimizer.weight_decay=0.05", "trainer.max_epochs=1",
            "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
            "callbacks.progress_bar=null",
            "trainer.log_every_n_steps=50", "logger=none", "test=false", "task_name=speed",
            f"hydra.run.dir={run_dir}"]


def run_fashionlab(args: argparse.Namespace) -> dict:
    """This project's training run (train.py's train()) with the window timer added."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from fashionlab.training.run import train

    run_dir = args.out / "fashionlab_run"
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=fashionlab_overrides(args, run_dir), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    timer = window_timer(args.warmup)
    metrics = train(cfg, extra_callbacks=[timer])
    return {**timer.record, "precision": str(cfg.trainer.precision),
            "train_images_per_s_whole_fit": metrics.get("train_images_per_s")}


def timm_arguments(args: argparse.Namespace) -> list[str]:
    return ["--model", args.model, "--num-classes", str(args.num_classes), "--img-size", str(args.image_size),
            "-b", str(args.batch_size), "--epochs", "1", "--amp", "--amp-dtype", "bfloat16",
            "--channels-last",
            "--no-prefetcher", "--workers", str(args.workers), "--opt", "adamw", "--lr", "1e-3",
            "--weight-decay", "0.05", "--sched", "cosine", "--warmup-epochs", "0", "--log-interval", "50",
            "--output", str(args.out / "timm_run"), "--data-dir", str(args.out), "--dataset", "synthetic",
            "--device", args.device, "--seed", "42", *(["--pin-mem"] if args.device == "cuda" else [])]


def child(args: argparse.Namespace, *extra: str, log: str, env: dict | None = None) -> int:
    with open(args.out / log, "w") as out:
        return subprocess.call([sys.executable, *extra], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100, help="training batches per run")
    parser.add_argument("--warmup", type=int, default=10, help="batches left out of the timing")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=512)
    parser.add_argument("--embed-batches", type=int, default=20)
    parser.add_argument("--timm-pythonpath", default="",
                        help="prepended to PYTHONPATH for timm's train.py (a newer timm than the image's)")
    parser.add_argument("--only", choices=["fashionlab"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only == "fashionlab":
        (args.out / "fashionlab_speed.json").write_text(json.dumps(run_fashionlab(args), indent=2) + "\n")
        return

    common = ["--out", str(args.out), "--device", args.device, "--model", args.model,
              "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
              "--steps", str(args.steps), "--warmup", str(args.warmup), "--workers", str(args.workers),
              "--num-classes", str(args.num_classes), "--distinct", str(args.distinct)]
    result: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    rc = child(args, __file__, *common, "--only", "fashionlab", log="speed_fashionlab.log")
    result["fashionlab"] = (json.loads((args.out / "fashionlab_speed.json").read_text())
                            if rc == 0 else {"error": f"exit {rc}, see speed_fashionlab.log"})
    timm_json = args.out / "timm_speed.json"
    paths = [p for p in (args.timm_pythonpath, os.environ.get("PYTHONPATH", "")) if p]
    rc = child(args, str(ROOT / "benchmarks" / "timm_synthetic.py"), "--result", str(timm_json),
               "--warmup", str(args.warmup), "--distinct", str(args.distinct),
               "--train-length", str(args.steps * args.batch_size), "--eval-length", str(args.batch_size),
               "--num-classes", str(args.num_classes), "--image-size", str(args.image_size), "--",
               *timm_arguments(args), log="speed_timm.log", env={"PYTHONPATH": os.pathsep.join(paths)})
    result["timm"] = json.loads(timm_json.read_text()) if timm_json.is_file() else {}
    if rc != 0:
        result["timm"]["error"] = f"exit {rc}, see speed_timm.log"
    ours, theirs = result["fashionlab"].get("images_per_s"), result["timm"].get("images_per_s")
    result["train_ratio"] = round(ours / theirs, 4) if ours and theirs else None

    model = backbone(args)
    rc = child(args, str(ROOT / "benchmarks" / "embed.py"), "--device", args.device,
               "--variants", "channels_last",
               "--batches", str(args.embed_batches), "--batch-size", str(args.batch_size), "--repeats", "3",
               "--out", str(args.out / "embed.json"), *model, "data=synthetic", "backbone.pretrained=false",
               f"data.image_size={args.image_size}", f"data.num_classes={args.num_classes}",
               f"data.distinct={args.distinct}", f"data.eval_length={args.embed_batches * args.batch_size}",
               "data.num_workers=0", "logger=none", log="speed_embed.log")
    if rc == 0:
        row = json.loads((args.out / "embed.json").read_text())["rows"][0]
        result["embed"] = {k: row[k] for k in ("bare_images_per_s", "extract_images_per_s", "ratio_median")}
    else:
        result["embed"] = {"error": f"exit {rc}, see speed_embed.log"}
    (args.out / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("fashionlab", "timm", "train_ratio", "embed")}, indent=2))


if __name__ == "__main__":
    main()
