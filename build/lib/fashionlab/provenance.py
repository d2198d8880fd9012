"""Where a result came from: the code's git commit and the machine and libraries that made it
(metrics.json, evaluation reports and `fashionlab record` all use these)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "timm", "lightning")


def git_info(repo_dir: str | Path) -> dict[str, Any]:
    """Commit hash and whether the work tree has uncommitted changes (None outside git)."""
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def ram_gb() -> float | None:
    """The machine's physical memory in GiB (one decimal), None where the OS does not say."""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return None


def environment_info() -> dict[str, Any]:
    """The machine and library versions in use: CPU model and cores, RAM, GPUs, torch/timm/lightning."""
    import torch

    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    versions = {}
    for package in LIBRARIES:
        try:
            versions[f"{package}_version"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[f"{package}_version"] = None
    return {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "ram_gb": ram_gb(),
            "gpu": ", ".join(gpus) or None, "gpu_count": len(gpus),
            "python_version": platform.python_version(), "platform": platform.platform(), **versions}
