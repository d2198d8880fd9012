"""What trusting the data costs on full-size photos: the data fingerprint's content hashes (first
run: every byte read; later runs: the stat cache) and the verification of a local prepared cache
(SHA-256 of every chunk and index file) before a run uses it.

    python benchmarks/cache_trust.py [--n 1000] [--dir /tmp/fashionlab-photos]

Writes (or reuses) `--n` photo-like 1800x2400 JPEGs at quality 90 in the Kaggle layout
(benchmarks/photo_data.py, as benchmarks/loader.py), composes `data=fashion_products` on them,
builds (or reuses) the raw cache in <dir>/cache and prints one JSON object of seconds and sizes.
The page cache is warm for every figure (the files were just written or read); on a cold disk add
the time to read the bytes from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loader import compose_train  # noqa: E402
from photo_data import photos_present, write_kaggle_photos  # noqa: E402

from fashionlab.data.cache.integrity import verify_local  # noqa: E402
from fashionlab.data.file_hashes import content_hashes  # noqa: E402
from fashionlab.training.run import build_datamodule  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "fashionlab-photos"))
    args = parser.parse_args()
    root = Path(args.dir) / f"n{args.n}"
    started = time.perf_counter()
    if not photos_present(root, args.n):
        write_kaggle_photos(root, args.n)
    out = {"photos": args.n, "write_photos_s": round(time.perf_counter() - started, 1)}
    paths = sorted(str(p) for p in (root / "images").glob("*.jpg"))
    out["photo_bytes"] = sum(os.path.getsize(p) for p in paths)
    with tempfile.TemporaryDirectory() as store:
        for run in ("first", "later"):
            t = time.perf_counter()
            _, read = content_hashes(paths, root / "images", store, settle_ns=0)
            out[f"fingerprint_hashes_{run}_run_s"] = round(time.perf_counter() - t, 3)
            out[f"fingerprint_files_read_{run}_run"] = read
    overrides = ["data=fashion_products", f"data.root={root}", "data.preprocess.decode=reduced",
                 f"data.cache.dir={root / 'cache'}", "data.num_workers=0", "data.on_bad_image=skip"]
    datamodule = build_datamodule(compose_train(overrides))
    t = time.perf_counter()
    datamodule.setup()  # builds the cache on the first call (or reuses and verifies it)
    out["setup_s"] = round(time.perf_counter() - t, 1)
    record = datamodule.cache_record
    folder = root / "cache" / record.key
    out["cache_build_s"] = record.data.get("build_seconds")
    out["cache_files"] = len(record.data["files"])
    out["cache_bytes"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    timings = []
    for _ in range(3):
        t = time.perf_counter()
        verify_local(folder, record.data)
        timings.append(time.perf_counter() - t)
    out["verify_cache_s"] = round(min(timings), 3)
    out["verify_cache_mib_per_s"] = round(out["cache_bytes"] / 2**20 / min(timings))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
