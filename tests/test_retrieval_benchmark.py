"""benchmarks/retrieval.py at a tiny size: output files and their structure, recall values,
exact search's recall of 1 — no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_retrieval_benchmark")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "retrieval.py"


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run: synthetic vectors and real embeddings of another dimension (projected to 32)."""
    tmp = tmp_path_factory.mktemp("retrieval_bench")
    emb = np.random.default_rng(0).normal(size=(300, 48)).astype(np.float32)
    np.save(tmp / "embeddings.npy", emb)
    out = tmp / "out"
    proc = run_benchmark("--sizes", "2000", "--dims", "32", "--queries", "50", "--single", "10",
                         "--real", str(tmp), "--hnsw-m", "8", "--ef-search", "16", "64",
                         "--nprobe", "4", "64", "--pq-m", "8", "--train-size", "2000", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_outputs_and_structure(results: Path) -> None:
    assert {p.name for p in results.iterdir()} == {"results.md", "results.csv", "results.json"}
    summary = json.loads((results / "results.json").read_text())
    for key in ("command", "git_commit", "hardware", "faiss_version", "target", "cases", "rows",
                "meeting_target"):
        assert key in summary
    assert "--sizes 2000" in summary["command"]
    assert summary["hardware"]["cpu_cores"] >= 1
    cases = [(c["data"], c["n"], c["d"]) for c in summary["cases"]]
    assert cases == [("synthetic", 2000, 32), ("real", 2000, 32)]
    real = summary["cases"][1]
    assert "embeddings.npy" in real["source"] and "48->32" in real["source"]
    assert real["noise_norm"] > 0
    table = pd.read_csv(results / "results.csv")
    assert len(table) == len(summary["rows"])
    # per case: flat, HNSW x 2 efSearch, IVF-Flat / IVF-PQ / IVF-PQ+refine x 2 nprobe (64 capped at nlist)
    assert table.groupby("data").size().to_dict() == {"synthetic": 9, "real": 9}
    assert set(table["index"]) == {"flat", "hnsw", "ivf_flat", "ivf_pq", "ivf_pq+refine"}
    assert "IVF51,PQ8x8np,RFlat" in set(table["factory"])
    assert not table["setting"].str.contains("nprobe=64").any()  # capped at nlist = 2000 // 39
    markdown = (results / "results.md").read_text()
    assert "| data " in markdown and "recall@10" in markdown and "python" in markdown
    assert markdown.count("\n| synthetic ") == 9


def test_recall_and_ratios(results: Path) -> None:
    table = pd.read_csv(results / "results.csv")
    assert table["recall_at_10"].between(0, 1).all()
    flat = table[table["index"] == "flat"]
    assert (flat["recall_at_10"] == 1.0).all()
    assert np.allclose(flat["speedup_single"], 1.0) and np.allclose(flat["speedup_batched"], 1.0)
    assert (table["qps_single"] > 0).all() and (table["qps_batched"] > 0).all()
    assert (table.loc[table["build_s"].notna(), "build_s"] >= 0).all()
    assert (table["index_mb"] > 0).all()
    # exact re-ranking never lowers recall at the same nprobe
    for _, case in table.groupby("data"):
        pq = case[case["index"] == "ivf_pq"]["recall_at_10"].to_numpy()
        refined = case[case["index"] == "ivf_pq+refine"]["recall_at_10"].to_numpy()
        assert (refined >= pq - 1e-9).all()
    hits = json.loads((results / "results.json").read_text())["meeting_target"]
    assert all(row["meets_target"] and row["index"] != "flat" for row in hits)


@pytest.mark.slow
def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    proc = run_benchmark("--real", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing" in proc.stderr
    proc = run_benchmark("--nlist", "many", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "--nlist" in proc.stderr
    assert not (tmp_path / "out").exists()
