"""Vector search at up to a million items: recall@10 against exact search, single-query and
batched speed, build time and memory of HNSW and IVF (flat lists, PQ codes, and PQ re-ranked with
the exact vectors: faiss IndexRefineFlat) against exact flat search (IndexFlatIP on L2-normalised
vectors, as fashionlab.retrieval.index builds it), on two kinds of data per size and dimension:

- `synthetic`: unit vectors around 1,000 random centres;
- `real`: real vectors tiled to the size with Gaussian noise — the `embeddings.npy` of an
  evaluation folder given with `--real`, or else real Fashion-MNIST images (mean-centred pixels)
  through a fixed random projection; vectors of another dimension are projected the same way.

    python benchmarks/retrieval.py [--sizes 1000000] [--dims 256 512] [--data synthetic real]
        [--real EVAL_DIR_OR_NPY] [--queries 1000] [--single 200] [--out DIR]

Batched: all queries, in calls of `--batch` queries, on faiss' OpenMP threads. Single: `--single`
queries one call each on one thread (as a request handler would). Speeds are ratios against
exact flat search in the same run. The exact top-k (ground truth) comes from the flat index's
batched calls, `--batch` queries at a time. Target: recall@10 >= 0.95 at >= 20x flat's
single-query speed. Writes results.md, results.csv and results.json (command, commit, hardware,
faiss version) to `--out` (default benchmarks/results/retrieval/<stamp>/).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
from faiss.contrib.ivf_tools import add_preassigned

from fashionlab.data.readers.idx import read_idx
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError, FashionlabError
from fashionlab.provenance import cpu_model, git_info, ram_gb
from fashionlab.retrieval.index import index_plan, search
from fashionlab.retrieval.metrics import recall_vs_exact

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CHUNK = 65536


def unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def projection(d_in: int, d: int, seed: int = 0) -> np.ndarray:
    """The fixed Gaussian random projection R^d_in -> R^d (same seed, same matrix)."""
    return (np.random.default_rng(seed).normal(size=(d_in, d)) / np.sqrt(d)).astype(np.float32)


def synthetic(n: int, nq: int, d: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Gallery and queries: unit vectors around `clusters` random unit centres (noise norm 0.6)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(clusters, d)))
    x = np.empty((n + nq, d), dtype=np.float32)
    for s in range(0, n + nq, CHUNK):
        e = min(s + CHUNK, n + nq)
        noise = rng.normal(scale=0.6 / np.sqrt(d), size=(e - s, d))
        x[s:e] = centres[rng.integers(0, clusters, e - s)] + noise
    faiss.normalize_L2(x)
    return x[:n], x[n:].copy(), {"source": f"synthetic: {clusters} clusters, noise norm 0.6"}


def real_bases(real: Path | None, d: int, nq: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Unit base vectors for the gallery and (disjoint) for the queries, and where they come from."""
    if real is None:
        files = [FASHION_MNIST / "train-images-idx3-ubyte.gz", FASHION_MNIST / "t10k-images-idx3-ubyte.gz"]
        if not all(f.is_file() for f in files):
            raise DataNotFoundError(f"Fashion-MNIST images not found in {FASHION_MNIST}; pass --real "
                                    "an evaluation folder (or its embeddings.npy) instead")
        train, test = (read_idx(f).reshape(-1, 784).astype(np.float32) / 255 for f in files)
        mean = train.mean(axis=0)
        r = projection(784, d)
        return (unit((train - mean) @ r), unit((test - mean) @ r),
                f"real Fashion-MNIST images (60k train as gallery base, 10k test as query base), "
                f"mean-centred pixels through a fixed random projection 784->{d}")
    path = real / "embeddings.npy" if real.is_dir() else real
    if not path.is_file():
        raise DataNotFoundError(f"--real {real}: no embeddings.npy there")
    emb = np.load(path)
    if emb.ndim != 2 or len(emb) < 2:
        raise DataFormatError(f"{path}: expected an (N >= 2, D) array, got shape {emb.shape}")
    order = np.random.default_rng(0).permutation(len(emb))
    held = max(1, min(nq, len(emb) // 5))
    how = f"real embeddings {path} ({len(emb)} x {emb.shape[1]}, {held} held out as query base)"
    if emb.shape[1] != d:
        how += f" through a fixed random projection {emb.shape[1]}->{d}"
        emb = emb.astype(np.float32) @ projection(emb.shape[1], d)
    emb = unit(emb)
    return emb[order[held:]], emb[order[:held]], how


def tiled(base: np.ndarray, n: int, noise_norm: float, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors: base rows in turn, each plus Gaussian noise of expected norm `noise_norm`."""
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    scale = noise_norm / np.sqrt(base.shape[1])
    for s in range(0, n, CHUNK):
        e = min(s + CHUNK, n)
        out[s:e] = base[np.arange(s, e) % len(base)] + rng.normal(scale=scale, size=(e - s, base.shape[1]))
    faiss.normalize_L2(out)
    return out


def real(n: int, nq: int, d: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict]:
    """Real vectors tiled to n with noise `--noise` x the base's median nearest-neighbour distance."""
    base, qbase, how = real_bases(args.real, d, nq)
    sample = base[np.random.default_rng(1).choice(len(base), min(2000, len(base)), replace=False)]
    flat = faiss.IndexFlatIP(d)
    flat.add(base)
    sims, _ = flat.search(sample, 2)
    nn = float(np.median(np.sqrt(np.maximum(2 - 2 * sims[:, 1], 0))))
    del flat
    rng = np.random.default_rng(args.seed + n + d)
    noise = args.noise * nn
    info = {"source": how, "base_items": len(base), "copies_per_base_item": n / len(base),
            "median_nn_distance": nn, "noise_norm": noise}
    return tiled(base, n, noise, rng), tiled(qbase, nq, noise, rng), info


def proc_status_mb(key: str) -> float | None:
    """VmRSS / VmHWM of this process in MiB (None where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def index_bytes(index: faiss.Index) -> int:
    """Serialised size, counted without holding a copy."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total


def batched(index: faiss.Index, info: dict, queries: np.ndarray, k: int,
            batch: int) -> tuple[np.ndarray, float]:
    search(index, info, queries[:1], k)  # warm-up
    ids = np.empty((len(queries), k), dtype=np.int64)
    started = time.perf_counter()
    for s in range(0, len(queries), batch):
        ids[s:s + batch] = search(index, info, queries[s:s + batch], k)[1]
    return ids, time.perf_counter() - started


def single(index: faiss.Index, info: dict, queries: np.ndarray, k: int) -> float:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        search(index, info, queries[:1], k)
        started = time.perf_counter()
        for q in queries:
            search(index, info, q[None, :], k)
        return time.perf_counter() - started
    finally:
        faiss.omp_set_num_threads(threads)


def unit_flat(gallery: np.ndarray) -> faiss.Index:
    """Exact search as fashionlab.retrieval.index builds it (factory "Flat", inner product)."""
    index = faiss.index_factory(gallery.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(gallery)
    return index


def hnsw_index(gallery: np.ndarray, factory: str, ef_construction: int) -> faiss.Index:
    index = faiss.index_factory(gallery.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    faiss.downcast_index(index).hnsw.efConstruction = ef_construction
    for s in range(0, len(gallery), 4 * CHUNK):
        index.add(gallery[s:s + 4 * CHUNK])
    return index


class CoarseQuantizer:
    """One k-means coarse quantizer (trained on a `--train-size` sample: the whole gallery would take
    hours at 1M) and the gallery's list assignments, shared by IVF-Flat and IVF-PQ."""

    def __init__(self, gallery: np.ndarray, nlist: int, args: argparse.Namespace) -> None:
        started = time.perf_counter()
        rng = np.random.default_rng(args.seed)
        picked = rng.choice(len(gallery), min(len(gallery), args.train_size), replace=False)
        self.sample = gallery[np.sort(picked)]
        self.quantizer = faiss.IndexFlatIP(gallery.shape[1])
        ivf = faiss.IndexIVFFlat(self.quantizer, gallery.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(self.sample)
        self.assign = np.empty(len(gallery), dtype=np.int64)
        for s in range(0, len(gallery), CHUNK):
            self.assign[s:s + CHUNK] = self.quantizer.search(gallery[s:s + CHUNK], 1)[1][:, 0]
        self.seconds = time.perf_counter() - started

    def fill(self, index: faiss.Index, gallery: np.ndarray) -> faiss.Index:
        """Train the index's codes (if any) on the sample, then add the gallery with its assignments."""
        index.train(self.sample)  # the coarse quantizer is trained already: only the PQ codebooks are
        for s in range(0, len(gallery), CHUNK):
            add_preassigned(index, gallery[s:s + CHUNK], self.assign[s:s + CHUNK])
        return index


def plans(n: int, d: int, args: argparse.Namespace) -> list[dict]:
    """The indexes to build, each with its search settings; factories from the project's index_plan."""
    out = []
    if "hnsw" in args.indexes:
        for m in args.hnsw_m:
            info = index_plan({"type": "hnsw", "M": m, "efConstruction": args.ef_construction}, n, d)
            settings = [{"type": "hnsw", "params": {**info["params"], "efSearch": ef}}
                        for ef in args.ef_search]
            out.append({"index": "hnsw", "factory": info["factory"], "M": m, "settings": settings})
    ivf = index_plan({"type": "ivf_pq", "nlist": args.nlist, "pq_m": args.pq_m, "pq_nbits": 8}, n, d)
    nlist, nprobes = ivf["params"]["nlist"], sorted({min(p, ivf["params"]["nlist"]) for p in args.nprobe})

    def settings(refine: float = 0) -> list[dict]:  # "ivf_pq" settings set nprobe on any IVF index
        return [{"type": "ivf_pq", "params": {"nprobe": p, "refine_k_factor": refine}} for p in nprobes]

    if "ivf_flat" in args.indexes:
        out.append({"index": "ivf_flat", "factory": f"IVF{nlist},Flat", "nlist": nlist,
                    "settings": settings()})
    if "ivf_pq" in args.indexes:
        out.append({"index": "ivf_pq", "factory": ivf["factory"], "nlist": nlist, "pq": ivf["params"],
                    "settings": settings(), "refined": settings(args.refine) if args.refine > 0 else []})
    return out


def make_index(plan: dict, gallery: np.ndarray, args: argparse.Namespace, coarse: dict) -> faiss.Index:
    """Build one planned index (IVF ones on the case's shared coarse quantizer, made on first use)."""
    d = gallery.shape[1]
    if plan["index"] == "hnsw":
        return hnsw_index(gallery, plan["factory"], args.ef_construction)
    if "q" not in coarse:
        coarse["q"] = CoarseQuantizer(gallery, plan["nlist"], args)
    q = coarse["q"]
    if plan["index"] == "ivf_flat":
        return q.fill(faiss.IndexIVFFlat(q.quantizer, d, plan["nlist"], faiss.METRIC_INNER_PRODUCT), gallery)
    pq = plan["pq"]
    index = faiss.IndexIVFPQ(q.quantizer, d, plan["nlist"], pq["pq_m"], pq["pq_nbits"],
                             faiss.METRIC_INNER_PRODUCT)
    index.do_polysemous_training = False  # the factory's "np"
    return q.fill(index, gallery)


def measure(index: faiss.Index, setting: dict, queries: np.ndarray, truth: np.ndarray | None,
            args: argparse.Namespace) -> tuple[dict[str, Any], np.ndarray]:
    """Batched and single-query speed and recall@k of one search setting (truth None: exact)."""
    ids, seconds = batched(index, setting, queries, args.k, args.batch)
    nsingle = min(args.single, len(queries))
    one = single(index, setting, queries[:nsingle], args.k)
    params = setting["params"]
    label = ", ".join(f"{key}={params[key]:g}" for key in ("efSearch", "nprobe", "refine_k_factor")
                      if params.get(key))
    row = {"setting": label, "recall_at_10": 1.0 if truth is None else recall_vs_exact(ids, truth, args.k),
           "qps_single": nsingle / one, "qps_batched": len(queries) / seconds}
    return row, ids


def build_measured(make: Any) -> tuple[faiss.Index, dict]:
    """Build an index with make(); build time, serialised size, RSS growth and peak RSS while building.
    IVF build times include the shared coarse quantizer's training and assignments."""
    gc.collect()
    before = proc_status_mb("VmRSS")
    reset_peak_rss()
    started = time.perf_counter()
    index, shared = make()
    seconds = time.perf_counter() - started + shared
    after = proc_status_mb("VmRSS")
    return index, {"build_s": seconds, "index_mb": index_bytes(index) / 2**20,
                   "rss_delta_mb": None if before is None else after - before,
                   "peak_rss_mb": proc_status_mb("VmHWM")}


def run_case(data: str, n: int, d: int, args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Every index and setting on one gallery; flat first (its results are the ground truth)."""
    started = time.perf_counter()
    if data == "synthetic":
        gallery, queries, info = synthetic(n, args.queries, d, args.clusters, args.seed + n + d)
    else:
        gallery, queries, info = real(n, args.queries, d, args)
    case = {"data": data, "n": n, "d": d, "data_s": time.perf_counter() - started, **info}
    print(f"-- {data} {n} x {d}: {info['source']}", flush=True)
    rows: list[dict] = []

    def record(name: str, factory: str, built: dict, row: dict) -> None:
        first = not rows or (rows[-1]["index"], rows[-1]["factory"]) != (name, factory)
        rows.append({"data": data, "n": n, "d": d, "index": name, "factory": factory, **row,
                     **{key: value if first or key == "index_mb" else None for key, value in built.items()}})
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)

    flat, built = build_measured(lambda: (unit_flat(gallery), 0.0))
    row, truth = measure(flat, {"type": "flat", "params": {}}, queries, None, args)
    record("flat", "Flat", built, row)
    del flat
    coarse: dict = {}
    for plan in plans(n, d, args):
        def make(plan: dict = plan) -> tuple[faiss.Index, float]:
            had = "q" in coarse  # the shared quantizer's time counts in every IVF index's build time
            index = make_index(plan, gallery, args, coarse)
            return index, coarse["q"].seconds if had else 0.0

        index, built = build_measured(make)
        for setting in plan["settings"]:
            record(plan["index"], plan["factory"], built, measure(index, setting, queries, truth, args)[0])
        if plan.get("refined"):  # the same IVF-PQ, re-ranking with a copy of the exact vectors
            before, t0 = proc_status_mb("VmRSS"), time.perf_counter()
            refine = faiss.IndexRefineFlat(index, faiss.swig_ptr(gallery))
            seconds = time.perf_counter() - t0
            grown = None if before is None else proc_status_mb("VmRSS") - before + built["rss_delta_mb"]
            refined = {"build_s": built["build_s"] + seconds, "index_mb": index_bytes(refine) / 2**20,
                       "rss_delta_mb": grown, "peak_rss_mb": proc_status_mb("VmHWM")}
            for setting in plan["refined"]:
                record("ivf_pq+refine", plan["factory"] + ",RFlat", refined,
                       measure(refine, setting, queries, truth, args)[0])
            del refine
        del index
    flat_row = rows[0]
    for row in rows:
        row["speedup_single"] = row["qps_single"] / flat_row["qps_single"]
        row["speedup_batched"] = row["qps_batched"] / flat_row["qps_batched"]
        row["meets_target"] = bool(row["index"] != "flat" and row["recall_at_10"] >= args.target_recall
                                   and row["speedup_single"] >= args.target_speedup)
    return rows, case


def provenance() -> dict[str, Any]:
    """Command, commit and the machine, for results.json (the project's shared provenance)."""
    return {"command": shlex.join(["python", *sys.argv]), **git_info(ROOT),
            "date": datetime.now().isoformat(timespec="seconds"),
            "hardware": {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "ram_gb": ram_gb(),
                "faiss_threads": faiss.omp_get_max_threads(), "nice": os.nice(0),
                "load_average": os.getloadavg(), "platform": platform.platform()},
            "faiss_version": faiss.__version__, "numpy_version": np.__version__,
            "python_version": platform.python_version(), "pandas_version": metadata.version("pandas")}


COLUMNS = {"data": "data", "n": "N", "d": "d", "index": "index", "factory": "factory", "setting": "setting",
           "recall_at_10": "recall@10", "qps_single": "single q/s", "speedup_single": "single vs flat",
           "qps_batched": "batched q/s", "speedup_batched": "batched vs flat", "build_s": "build s",
           "index_mb": "index MiB", "rss_delta_mb": "RSS +MiB", "meets_target": "target"}


def markdown_table(table: pd.DataFrame) -> str:
    def fmt(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if column == "meets_target":
            return "yes" if value else ""
        if column.startswith("speedup"):
            return f"{value:.3g}x"
        if column == "recall_at_10":
            return f"{value:.3f}"
        if isinstance(value, float):
            return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
        return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)

    shown = pd.DataFrame({COLUMNS[c]: [fmt(c, v) for v in table[c].astype(object)] for c in COLUMNS})
    return shown.to_markdown(index=False, disable_numparse=True)


def write_outputs(out: Path, rows: list[dict], cases: list[dict], args: argparse.Namespace,
                  echo: bool = True) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows, columns=[*COLUMNS, "peak_rss_mb"])
    hits = table[table["meets_target"]]
    target = f"recall@10 >= {args.target_recall:g} at >= {args.target_speedup:g}x flat's single-query speed"
    summary = {**provenance(), "target": target,
               "args": {key: str(value) if isinstance(value, Path) else value
                        for key, value in vars(args).items()},
               "cases": cases, "rows": json.loads(table.to_json(orient="records")),
               "meeting_target": json.loads(hits.to_json(orient="records"))}
    table.to_csv(out / "results.csv", index=False)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    hw = summary["hardware"]
    lines = [f"# Vector search benchmark ({summary['date']})", "", "```bash", summary["command"], "```", "",
             f"commit {summary['git_commit']}{' (dirty)' if summary['git_dirty'] else ''}; {hw['cpu']}, "
             f"{hw['cpu_cores']} cores, {hw['ram_gb']} GiB, faiss {summary['faiss_version']} "
             f"({hw['faiss_threads']} threads batched, 1 single); {args.queries} queries batched "
             f"({args.batch} per call), {min(args.single, args.queries)} single; k={args.k}", ""]
    lines += [f"- {c['data']} {c['n']:,} x {c['d']}: {c['source']}"
              + (f"; noise norm {c['noise_norm']:.3g} (= {args.noise:g} x median NN distance "
                 f"{c['median_nn_distance']:.3g})" if "noise_norm" in c else "") for c in cases]
    lines += ["", markdown_table(table), "", f"Target: {target}."]
    for (data, n, d), group in table.groupby(["data", "n", "d"], sort=False):
        met = group[group["meets_target"]]
        best = met.sort_values("speedup_single", ascending=False).head(1)
        lines.append(f"- {data} {n:,} x {d}: " + (
            "none" if best.empty else f"{len(met)} settings; fastest single query: {best['factory'].iloc[0]} "
            f"{best['setting'].iloc[0]} (recall {best['recall_at_10'].iloc[0]:.3f}, "
            f"{best['speedup_single'].iloc[0]:.3g}x single, {best['speedup_batched'].iloc[0]:.3g}x batched)"))
    (out / "results.md").write_text("\n".join(lines) + "\n")
    if echo:
        print("\n".join(lines), flush=True)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--data", nargs="+", choices=["synthetic", "real"], default=["synthetic", "real"])
    parser.add_argument("--real", type=Path, help="evaluation folder (or embeddings.npy) for the real "
                        "data; default: Fashion-MNIST images through a random projection")
    parser.add_argument("--noise", type=float, default=0.5,
                        help="noise norm of the tiled real copies, in median nearest-neighbour distances")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200, help="queries timed one call at a time")
    parser.add_argument("--batch", type=int, default=250, help="queries per batched call")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--indexes", nargs="+", choices=["hnsw", "ivf_flat", "ivf_pq"],
                        default=["hnsw", "ivf_flat", "ivf_pq"])
    parser.add_argument("--hnsw-m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--ef-construction", type=int, default=40)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--nlist", default="1024",
                        help="IVF lists, or auto (4 sqrt(N), conf/index/ivf_pq.yaml)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--train-size", type=int, default=65536, help="IVF/PQ training sample")
    parser.add_argument("--pq-m", type=int, default=64)
    parser.add_argument("--refine", type=float, default=10,
                        help="IndexRefineFlat k_factor (0: no refine rows)")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--target-speedup", type=float, default=20)
    parser.add_argument("--threads", type=int, default=0,
                        help="faiss threads for batched search (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path,
                        help="output folder (default benchmarks/results/retrieval/<stamp>)")
    args = parser.parse_args(argv)
    if args.nlist != "auto":
        try:
            args.nlist = int(args.nlist)
        except ValueError:
            raise ConfigError(f"--nlist {args.nlist!r}: expected a number or auto") from None
    for name in ("sizes", "dims", "ef_search", "nprobe", "hnsw_m"):
        if min(getattr(args, name)) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    if min(args.queries, args.single, args.batch, args.k, args.train_size) < 1:
        raise ConfigError("--queries, --single, --batch, --k and --train-size must be positive")
    if args.real is not None and not args.real.exists():
        raise DataNotFoundError(f"--real {args.real}: no such file or folder")
    if args.out is None:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        args.out = ROOT / "benchmarks" / "results" / "retrieval" / stamp
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except FashionlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    rows: list[dict] = []
    cases: list[dict] = []
    try:
        for n in args.sizes:
            for d in args.dims:
                for data in args.data:
                    case_rows, case = run_case(data, n, d, args)
                    rows += case_rows
                    cases.append(case)
                    write_outputs(args.out, rows, cases, args, echo=False)  # partial results so far
                    gc.collect()
    except FashionlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_outputs(args.out, rows, cases, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
