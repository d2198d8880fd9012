"""GPU smoke test: a short `trainer=gpu` run with mixed precision on the tiny fixture, then evaluate.py
on cuda. Marked `gpu` and skipped without CUDA (pytest -m gpu runs only it). The same body runs here
on CPU (bf16-mixed autocast), so the code path is checked on machines without a GPU too."""

import json

import pytest
import torch
from fixtures_runs import compose_config, evaluate_run

from fashionlab.training.run import train

from conftest import tiny_overrides

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

VARIANTS = {
    # trainer=gpu: one GPU, 16-mixed; EMA and mixup on, as in the best-classifier recipe
    "gpu": (["trainer=gpu", "data.pin_memory=true"], "cuda"),
    # the same path on CPU, kept short (bf16 autocast is slow on most CPUs)
    "cpu": (["trainer=cpu", "trainer.precision=bf16-mixed", "trainer.limit_train_batches=2",
             "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"], "cpu"),
}


@pytest.mark.parametrize("variant", [
    pytest.param("gpu", marks=[pytest.mark.gpu, needs_cuda]),
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
    metrics = train(cfg)
    assert metrics["epochs_completed"] == 2
    assert 0.0 <= metrics["test/article/acc"] <= 1.0
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["trainer"]["precision"] in ("16-mixed", "bf16-mixed")

    eval_dir = evaluate_run(run_dir, tmp_path / "eval", extra=(f"device={device}",))
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["device"] == device and report["classification"]
