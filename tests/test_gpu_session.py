"""The GPU session script's dry run (`bash benchmarks/gpu_session.sh --dry-run OUTDIR`): every stage on
this CPU at toy size, offline. The kit is this project's wheel only (built with pip wheel --no-deps
--no-build-isolation, installed with pip install --no-index --no-deps --target into a clean folder), its
dependencies those of this machine; the GPU tier is collected and skips without CUDA; the speed stage runs
train.py and timm's train.py on a tiny model; the retrieval recipe trains a few steps on the tiny fixture,
is evaluated and recorded. Not covered: the Python 3.12 wheels of `make gpu-kit` (they need the network)
and anything CUDA does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_dry_run_writes_every_stage_into_outdir(fmnist_dir, tmp_path):
    out = tmp_path / "out"
    # The script runs this interpreter (and its environment's commands), not whatever python3 is
    # first on PATH: CI calls .venv/bin/python without activating the venv.
    env = {**os.environ, "FASHION_MNIST_DIR": str(fmnist_dir), "GPU_SITE": str(tmp_path / "site"),
           "PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("GPU_KIT", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--dry-run", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in files} == {"summary.json", "summary.md", "env.txt", "logs.tar.gz",
                                       "records.tar.gz"}
    assert all(p.stat().st_size <= 16 * 1024 * 1024 for p in files)
    summary = json.loads((out / "summary.json").read_text())
    # stage 1's import check as on a lent GPU, where the kit's left-out packages (boto3, W&B, ...)
    # are absent: every reader and the image tables import; only the cache's S3 parts need boto3
    assert summary["dry_run"] and not summary["env"]["import_errors"]
    assert "boto3" in summary["env"]["left_out_absent"]
    assert summary["env"]["unavailable"] == [
        f"fashionlab.data.cache.{name}: needs boto3 (left out of the kit)"
        for name in ("litdata_hooks", "store", "streaming")]
    ran = {s["stage"]: s["rc"] for s in summary["stages"]}
    assert ran == {"install": 0, "gpu_compile": 0, "gpu_tests": 0, "speed": 0,
                   "train_fmnist_retrieval_h200": 0, "evaluate_fmnist_retrieval_h200": 0,
                   "record_fmnist_retrieval_h200": 0}
    # the installed fashionlab is the kit's wheel, in the clean target
    assert (tmp_path / "site" / "lib" / "fashionlab" / "__init__.py").is_file()
    assert summary["gpu_tests"]["tests"] >= 4
    speed = summary["speed"]
    assert speed["fashionlab"]["images_per_s"] > 0 and speed["timm"]["images_per_s"] > 0
    assert speed["train_ratio"] > 0 and speed["embed"]["bare_images_per_s"] > 0
    retrieval = summary["recipes"]["fmnist_retrieval_h200"]
    assert 0 <= retrieval["retrieval/article/P@1"] <= 1 and 0 <= retrieval["retrieval/article/mAP@R"] <= 1
    with tarfile.open(out / "records.tar.gz") as records:
        assert "records/fmnist_retrieval_h200/README.md" in records.getnames()
    with tarfile.open(out / "logs.tar.gz") as logs:
        assert "logs/speed.log" in logs.getnames() and "gpu_tests.xml" in logs.getnames()
