"""Vector search: build time, queries per second and recall@10 against exact search for the
FAISS indexes of conf/index/ (flat, hnsw, ivf_pq) and for a naive recommender's search (cosine
similarity in a Python loop over the catalogue items of the query's class, keeping a sorted
top-n), on synthetic clustered vectors and on real embeddings from an evaluation directory.

    python benchmarks/retrieval.py [--sizes 100000 1000000] [--dims 512 1280] [--eval-dir <eval dir>]

Batched queries use faiss' OpenMP threads; single queries run one at a time on one thread (as
a request handler would), and so does the naive loop. Every ratio is measured against exact
flat search (or the naive loop) in the same run. Prints a Markdown table and
writes benchmarks/results/retrieval.json.
"""

from __future__ import annotations

import argparse
import bisect
import json
import time
from pathlib import Path

import faiss
import numpy as np

from fashionlab.retrieval.index import build_index, search
from fashionlab.retrieval.metrics import recall_vs_exact

ROOT = Path(__file__).resolve().parents[1]


def clustered(n: int, d: int, clusters: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around `clusters` random centres (spread 0.6 per unit-norm centre); class =
    centre % classes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assign = rng.integers(0, clusters, n)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 65536):
        e = min(s + 65536, n)
        x[s:e] = centres[assign[s:e]] + rng.normal(scale=0.6 / np.sqrt(d), size=(e - s, d))
    faiss.normalize_L2(x)
    return x, (assign % classes).astype(np.int64)


def naive_search(query: np.ndarray, catalogue: np.ndarray, k: int) -> list[int]:
    """What a naive recommender does: a Python loop with cosine similarity per catalogue item,
    keeping a sorted top-k list."""
    top: list[tuple[float, int]] = []
    q_norm = float(np.linalg.norm(query))
    for item_id, item in enumerate(catalogue):
        sim = float(np.dot(query, item)) / (q_norm * float(np.linalg.norm(item)))
        if len(top) < k or sim > top[0][0]:
            bisect.insort(top, (sim, item_id))
            if len(top) > k:
                top.pop(0)
    return [i for _, i in reversed(top)]


def timed_search(index, info, queries: np.ndarray, k: int, single: int) -> dict:
    started = time.perf_counter()
    _, ids = search(index, info, queries, k)
    batched = time.perf_counter() - started
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query at a time, as a request handler would: one thread
    started = time.perf_counter()
    for q in queries[:single]:
        search(index, info, q[None, :], k)
    one = time.perf_counter() - started
    faiss.omp_set_num_threads(threads)
    return {"ids": ids, "qps_batched": len(queries) / batched, "qps_single": single / one}


def run_case(name: str, gallery: np.ndarray, labels: np.ndarray, queries: np.ndarray,
             query_classes: np.ndarray, args: argparse.Namespace) -> list[dict]:
    k = args.k
    rows = []
    started = time.perf_counter()
    flat, flat_info = build_index(gallery, {"type": "flat"})
    build = time.perf_counter() - started
    exact = timed_search(flat, flat_info, queries, k, args.single)
    truth = exact.pop("ids")
    rows.append({"case": name, "index": "flat", "setting": "", "build_s": build, **exact,
                 "recall_at_10": 1.0})
    print(rows[-1], flush=True)
    specs = [("hnsw", {"type": "hnsw", "M": args.hnsw_m, "efConstruction": args.ef_construction,
                       "efSearch": args.ef_search[0]}, "efSearch", args.ef_search),
             ("ivf_pq", {"type": "ivf_pq", "nlist": "auto", "nprobe": args.nprobe[0], "pq_m": args.pq_m,
                         "pq_nbits": 8, "refine_k_factor": args.refine}, "nprobe", args.nprobe)]
    for kind, spec, knob, values in specs:
        if kind not in args.indexes:
            continue
        started = time.perf_counter()
        index, info = build_index(gallery, spec)
        build = time.perf_counter() - started
        for value in values:
            info["params"][knob] = value
            result = timed_search(index, info, queries, k, args.single)
            rows.append({"case": name, "index": kind, "setting": f"{knob}={value}", "build_s": build,
                         "factory": info["factory"], **{k_: v for k_, v in result.items() if k_ != "ids"},
                         "recall_at_10": recall_vs_exact(result["ids"], truth, 10)})
            print(rows[-1], flush=True)
            build = float("nan")
    # the naive loop over the catalogue items of the query's class
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    n_naive = min(args.naive_queries, len(queries))
    found = np.full((n_naive, k), -1)
    started = time.perf_counter()
    for i in range(n_naive):
        members = by_class.get(int(query_classes[i]), np.array([], dtype=np.int64))
        local = naive_search(queries[i], gallery[members], k)
        found[i, :len(local)] = members[local]
    seconds = time.perf_counter() - started
    rows.append({"case": name, "index": "naive loop", "setting": "within class", "build_s": 0.0,
                 "qps_batched": n_naive / seconds, "qps_single": n_naive / seconds,
                 "recall_at_10": recall_vs_exact(found, truth[:n_naive], 10)})
    flat_single, flat_batched = rows[0]["qps_single"], rows[0]["qps_batched"]
    naive = rows[-1]["qps_single"]
    for row in rows:
        row["speedup_vs_flat_batched"] = row["qps_batched"] / flat_batched
        row["speedup_vs_flat_single"] = row["qps_single"] / flat_single
        row["speedup_vs_naive_single"] = row["qps_single"] / naive
    return rows


def real_case(eval_dir: Path, queries: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gallery = embeddings.npy minus its last `queries` rows, which become the queries; classes
    from gallery.parquet (first task; queries use their predicted class, as a recommender would)."""
    import pandas as pd

    emb = np.load(eval_dir / "embeddings.npy")
    table = pd.read_parquet(eval_dir / "gallery.parquet")
    manifest = json.loads((eval_dir / "manifest.json").read_text())
    task = next(iter(manifest["tasks"]))
    classes = manifest["tasks"][task]["classes"]
    labels = np.array([classes.index(c) for c in table[task]])
    predicted = np.array([classes.index(c) for c in table[f"pred_{task}"]])
    n = len(emb) - queries
    return (f"real {n}x{emb.shape[1]}", emb[:n], labels[:n], emb[n:], predicted[n:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 1280])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    parser.add_argument("--naive-queries", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--indexes", nargs="+", default=["hnsw", "ivf_pq"])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--pq-m", type=int, default=64)
    parser.add_argument("--refine", type=float, default=0.0, help="ivf_pq refine_k_factor")
    parser.add_argument("--eval-dir", type=Path, action="append", default=[],
                        help="evaluation directory whose embeddings are a real case (repeatable)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0: default)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retrieval.json")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    cases = []
    if not args.skip_synthetic:
        for n in args.sizes:
            for d in args.dims:
                x, labels = clustered(n + args.queries, d, args.clusters, args.classes, seed=n + d)
                cases.append((f"synthetic {n}x{d}", x[:n], labels[:n], x[n:], labels[n:]))
    cases += [real_case(path, args.queries) for path in args.eval_dir]
    rows = []
    while cases:  # pop each case so its vectors are freed once measured
        case = cases.pop(0)
        print(f"-- {case[0]}", flush=True)
        rows += run_case(*case, args)
    header = ["case", "index", "setting", "build_s", "qps_batched", "qps_single", "recall_at_10",
              "speedup_vs_flat_batched", "speedup_vs_flat_single", "speedup_vs_naive_single"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{row[h]:.3g}" if isinstance(row[h], float) else str(row[h])
                                for h in header) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
