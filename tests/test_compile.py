"""`training.compile=true` on CPU: the backbone is compiled for the fit, the checkpoint keeps the eager
parameter names (no `_orig_mod.`), a compiled run resumes from it, and evaluation and prediction load
it as any other. Plus the GPU settings' checks (trainer=gpu's precision, TF32 only on CUDA).

The CPU test compiles with the aot_eager backend (TorchDynamo capture and AOTAutograd, the parts that
touch the module and its checkpoint) to stay seconds long; the inductor backend (the default, C++
kernels on CPU) runs in the GPU tier (tests/test_gpu.py), which FASHIONLAB_GPU_TESTS_DEVICE=cpu runs here."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_runs import compose_config, evaluate_run
from lightning.pytorch.callbacks import Callback

from fashionlab.errors import ConfigError
from fashionlab.inference.checkpoint import load_checkpoint
from fashionlab.training.run import prepare_config, train
from fashionlab.training.speed import apply_matmul_precision

from conftest import tiny_overrides


class CompiledDuringFit(Callback):
    def __init__(self) -> None:
        self.compiled: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.compiled.append(getattr(pl_module.net.backbone, "_compiled_call_impl", None) is not None)


@pytest.mark.slow
def test_compiled_run_resumes_and_its_checkpoint_loads(fmnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = [*tiny_overrides(fmnist_dir, run_dir), "backbone=timm", "backbone.name=test_resnet",
              "backbone.pretrained=false", "data.image_size=32", "training.freeze_epochs=0",
              "training.compile=true", "training.compile_backend=aot_eager", "callbacks.progress_bar=null",
              "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    seen = CompiledDuringFit()
    train(compose_config("train", common), extra_callbacks=[seen])
    assert seen.compiled and all(seen.compiled)
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert state and not any("_orig_mod" in key for key in state)

    resumed = train(compose_config("train", [*common, "trainer.max_epochs=2", f"ckpt_path={last}"]))
    assert resumed["epochs_completed"] == 2 and resumed["resumed_from"] == str(last)

    loaded = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")  # strict: every key matched
    assert getattr(loaded.module.net.backbone, "_compiled_call_impl", None) is None
    report = json.loads((evaluate_run(run_dir, tmp_path / "eval") / "report.json").read_text())
    assert report["classification"] and report["retrieval"]["metrics"]


def test_compile_and_matmul_settings_are_checked(fmnist_dir, tmp_path):
    base = tiny_overrides(fmnist_dir, tmp_path)
    with pytest.raises(ConfigError, match=r"training\.compile"):
        prepare_config(compose_config("train", [*base, "training.compile=fast"]))
    with pytest.raises(ConfigError, match=r"training\.matmul_precision"):
        prepare_config(compose_config("train", [*base, "training.matmul_precision=tf32"]))
    # TF32 is a CUDA setting: a CPU run keeps full float32 matmuls
    cfg = prepare_config(compose_config("train", [*base, "trainer=cpu"]))
    assert apply_matmul_precision(cfg) is None and torch.get_float32_matmul_precision() == "highest"


def test_gpu_trainer_defaults(fmnist_dir, tmp_path):
    cfg = compose_config("train", [*tiny_overrides(fmnist_dir, tmp_path), "trainer=gpu"])
    expected = "bf16-mixed" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported(
        including_emulation=False) else "16-mixed"
    assert cfg.trainer.precision == expected
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.benchmark is True
    assert cfg.model.channels_last is True and cfg.training.matmul_precision == "high"
