"""The GPU tier (`pytest -m gpu`, `make test-gpu`): what a GPU user relies on, on CUDA. Marked `gpu`
and skipped without CUDA, except with FASHIONLAB_GPU_TESTS_DEVICE=cpu, which runs the same bodies on
CPU (the session script's --dry-run does, so that the tier is known to run before a GPU is lent).

Covered: trainer=gpu's defaults (bf16-mixed, TF32, cuDNN benchmark, channels-last) in a run with EMA
and Mixup then evaluate.py on the device; exact resume on the device; the metric-learning head
(SupCon) trained on the device, its embeddings extracted there equal to a CPU extraction, and the
FAISS index built from them; torch.compile on the device, resumed and evaluated from its checkpoint.
The CPU variant of the first test also runs in the slow tier, so its code path is checked without a GPU.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from fixtures_runs import compose_config, evaluate_run
from lightning.pytorch.callbacks import Callback

from fashionlab.training.run import train

from conftest import tiny_overrides

#: cuda (default), or cpu to run the tier's bodies without a GPU (the session script's --dry-run).
TIER_DEVICE = os.environ.get("FASHIONLAB_GPU_TESTS_DEVICE", "cuda")
needs_cuda = pytest.mark.skipif(TIER_DEVICE == "cuda" and not torch.cuda.is_available(),
                                reason="no CUDA device (FASHIONLAB_GPU_TESTS_DEVICE=cpu runs these on CPU)")
gpu_tier = [pytest.mark.gpu, needs_cuda]


def device_overrides() -> list[str]:
    """trainer=gpu on CUDA; on CPU (dry-run) the same settings where CPU has them, kept short."""
    if TIER_DEVICE == "cuda":
        return ["trainer=gpu", "data.pin_memory=true"]
    return ["trainer=cpu", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1"]


def tiny(run_dir, fmnist_dir, *extra: str):
    return compose_config("train", [
        *tiny_overrides(fmnist_dir, run_dir), *device_overrides(), "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null", "data.image_size=32", "optimizer.lr=5e-3", *extra])


class SeenSettings(Callback):
    """What the first training step ran with: autocast dtype, matmul precision, memory format."""

    def __init__(self) -> None:
        self.seen: dict = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.seen:
            return
        conv = next(m for m in pl_module.net.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        self.seen = {"device": pl_module.device.type, "precision": trainer.precision,
                     "matmul": torch.get_float32_matmul_precision(),
                     "cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last)}


VARIANTS = {
    # trainer=gpu: one GPU, bf16-mixed where supported; EMA and mixup on, as in the best-classifier recipe
    "gpu": (["trainer=gpu", "data.pin_memory=true"], "cuda"),
    # the same path on CPU, kept short (bf16 autocast is slow on most CPUs)
    "cpu": (["trainer=cpu", "trainer.precision=bf16-mixed", "trainer.limit_train_batches=2",
             "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"], "cpu"),
}


@pytest.mark.parametrize("variant", [
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                   reason="no CUDA device")]),
    pytest.param("cpu", marks=pytest.mark.slow),
])
def test_mixed_precision_run_and_evaluation(variant, fmnist_dir, tmp_path):
    trainer_overrides, device = VARIANTS[variant]
    run_dir = tmp_path / "run"
    cfg = compose_config("train", [
        *tiny_overrides(fmnist_dir, run_dir), *trainer_overrides,
        "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "callbacks.progress_bar=null",
        "data.image_size=32", "training.freeze_epochs=1", "optimizer.lr=5e-3",
        "callbacks=ema", "callbacks.ema.decay=0.9", "model.mixup.mixup_alpha=0.2",
    ])
    seen = SeenSettings()
    metrics = train(cfg, extra_callbacks=[seen])
    assert metrics["epochs_completed"] == 2
    assert 0.0 <= metrics["test/article/acc"] <= 1.0
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["trainer"]["precision"] in ("16-mixed", "bf16-mixed")
    assert seen.seen["device"] == device and seen.seen["channels_last"]
    if variant == "gpu":  # trainer=gpu's defaults on a bf16 device (Ampere and newer: every GPU lent here)
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        assert seen.seen["precision"] == ("bf16-mixed" if bf16 else "16-mixed")
        assert seen.seen["matmul"] == "high" and seen.seen["cudnn_benchmark"]

    eval_dir = evaluate_run(run_dir, tmp_path / "eval", extra=(f"device={device}",))
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["device"] == device and report["classification"]


class StopAfterEpoch(Callback):
    """Ends the fit after epoch `epoch` (0-based), as an interruption would, without changing the
    planned schedule (max_epochs)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)["state_dict"]


@pytest.mark.parametrize("_", [pytest.param(0, marks=gpu_tier)])
def test_exact_resume_on_the_device(_, fmnist_dir, tmp_path):
    """Two epochs straight == one epoch, then resumed from last.ckpt to two (bf16-mixed, EMA,
    channels-last; deterministic kernels, no cuDNN autotuning)."""
    common = ["trainer.deterministic=true", "trainer.benchmark=false", "callbacks=ema",
              "callbacks.ema.decay=0.9", "training.freeze_epochs=0", "trainer.max_epochs=2"]
    straight = train(tiny(tmp_path / "straight", fmnist_dir, *common))
    train(tiny(tmp_path / "split", fmnist_dir, *common), extra_callbacks=[StopAfterEpoch(0)])
    last = tmp_path / "split" / "checkpoints" / "last.ckpt"
    resumed = train(tiny(tmp_path / "split", fmnist_dir, *common, f"ckpt_path={last}"))
    assert resumed["epochs_completed"] == straight["epochs_completed"] == 2
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in resumed.items() if k.startswith("test/")} == \
        {k: v for k, v in straight.items() if k.startswith("test/")}


@pytest.mark.parametrize("_", [pytest.param(0, marks=gpu_tier)])
def test_metric_learning_head_and_faiss_index_from_device_embeddings(_, fmnist_dir, tmp_path):
    """SupCon head trained on the device; evaluate.py extracts the embeddings there (equal to a CPU
    extraction within bf16-free float32 tolerance) and builds the FAISS index from them."""
    import faiss

    run_dir = tmp_path / "run"
    train(tiny(run_dir, fmnist_dir, "embedding=supcon", "embedding.dim=16", "training.freeze_epochs=0"))
    on_device = evaluate_run(run_dir, tmp_path / "eval_device", extra=(f"device={TIER_DEVICE}", "index=hnsw"))
    on_cpu = evaluate_run(run_dir, tmp_path / "eval_cpu", extra=("device=cpu", "index=hnsw"))
    report = json.loads((on_device / "report.json").read_text())
    assert report["device"] == TIER_DEVICE
    device_emb, cpu_emb = np.load(on_device / "embeddings.npy"), np.load(on_cpu / "embeddings.npy")
    assert device_emb.shape[1] == 16
    cosine = (device_emb * cpu_emb).sum(axis=1)
    assert cosine.min() > 0.999
    index = faiss.read_index(str(on_device / "index.faiss"))
    assert index.ntotal == len(device_emb) and index.d == 16
    assert 0.0 <= report["retrieval"]["metrics"]["article"]["precision_at_1"] <= 1.0


@pytest.mark.parametrize("_", [pytest.param(0, marks=gpu_tier)])
def test_compiled_training_resumes_and_evaluates_on_the_device(_, fmnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ["backbone=timm", "backbone.name=test_resnet", "backbone.pretrained=false",
              "training.compile=true", "training.freeze_epochs=0"]
    train(tiny(run_dir, fmnist_dir, *common))
    assert not any("_orig_mod" in k for k in final_weights(run_dir))
    resumed = train(tiny(run_dir, fmnist_dir, *common, "trainer.max_epochs=2",
                         f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"))
    assert resumed["epochs_completed"] == 2
    report = json.loads((evaluate_run(run_dir, tmp_path / "eval", extra=(f"device={TIER_DEVICE}",))
                         / "report.json").read_text())
    assert report["classification"]
