"""Retrieval metrics on synthetic embeddings against pytorch-metric-learning's AccuracyCalculator,
including unknown labels, lone queries, self-exclusion and multilabel relevance; index options."""

import faiss
import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN

from fashionlab.errors import ConfigError
from fashionlab.retrieval.index import build_index, index_plan, load_index, save_index, search
from fashionlab.retrieval.metrics import drop_self, recall_vs_exact, relevant_counts, retrieval_metrics

NAMES = {"precision_at_1": "precision_at_1", "map_at_r": "mean_average_precision_at_r",
         "r_precision": "r_precision", "mrr": "mean_reciprocal_rank"}


def normalised(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    faiss.normalize_L2(x)
    return x


def reference(query, ql, ref, rl, k, ref_includes_query, comparison=None):
    calc = AccuracyCalculator(include=tuple(NAMES.values()), k=k, device=torch.device("cpu"),
                              knn_func=FaissKNN(index_init_fn=faiss.IndexFlatIP),
                              label_comparison_fn=comparison)
    if ref_includes_query:
        return calc.get_accuracy(query, ql, ref_includes_query=True)
    return calc.get_accuracy(query, ql, ref, rl, ref_includes_query=False)


@pytest.mark.parametrize("k_extra", [0, 7])
def test_multiclass_with_lone_queries(k_extra):
    rng = np.random.default_rng(0)
    gallery, query = normalised(rng, 300, 16), normalised(rng, 100, 16)
    gl, ql = rng.integers(0, 7, 300), rng.integers(0, 8, 100)  # label 7: lone queries
    r = relevant_counts(ql, gl)
    k = int(r.max()) + k_extra
    index, info = build_index(gallery, {"type": "flat"})
    _, ids = search(index, info, query, k)
    mine = retrieval_metrics(ql, gl, ids, r)
    assert mine["skipped_queries"] == int((ql == 7).sum()) > 0
    ref = reference(query, ql, gallery, gl, k, False)
    for name, ref_name in NAMES.items():
        assert mine[name] == pytest.approx(ref[ref_name], abs=1e-6)


def test_exclude_self():
    rng = np.random.default_rng(1)
    x, labels = normalised(rng, 200, 8), rng.integers(0, 5, 200)
    r = relevant_counts(labels, labels, np.ones(200, bool))
    k = int(r.max())
    index, info = build_index(x, {"type": "flat"})
    scores, ids = search(index, info, x, k + 1)
    ids, _ = drop_self(ids, scores, np.arange(200))
    assert not (ids == np.arange(200)[:, None]).any()
    mine = retrieval_metrics(labels, labels, ids, r)
    ref = reference(x, labels, None, None, k, True)
    for name, ref_name in NAMES.items():
        assert mine[name] == pytest.approx(ref[ref_name], abs=1e-6)


def test_multilabel_relevance_is_one_shared_label():
    rng = np.random.default_rng(2)
    gallery, query = normalised(rng, 150, 8), normalised(rng, 40, 8)
    gl = (rng.random((150, 4)) < 0.3).astype(np.int64)
    ql = (rng.random((40, 4)) < 0.3).astype(np.int64)
    ql[ql.sum(1) == 0, 0] = 1
    r = relevant_counts(ql, gl)
    index, info = build_index(gallery, {"type": "flat"})
    _, ids = search(index, info, query, int(r.max()))
    mine = retrieval_metrics(ql, gl, ids, r)

    def shares_a_label(a, b):  # AccuracyCalculator's label_comparison_fn, broadcasting over rows
        return ((a > 0) & (b > 0)).any(-1)

    ref = reference(query, ql, gallery, gl, int(r.max()), False, shares_a_label)
    for name, ref_name in NAMES.items():
        assert mine[name] == pytest.approx(ref[ref_name], abs=1e-6)


@pytest.mark.slow
def test_index_options(tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 32))
    x = (centres[rng.integers(0, 20, 2000)] + 0.3 * rng.normal(size=(2000, 32))).astype(np.float32)
    faiss.normalize_L2(x)
    exact, info = build_index(x, {"type": "flat"})
    _, truth = search(exact, info, x[:100], 10)
    for spec in ({"type": "hnsw", "M": 16, "efConstruction": 100, "efSearch": 64},
                 {"type": "ivf_pq", "nlist": "auto", "nprobe": 16, "pq_m": 12, "pq_nbits": 6,
                  "refine_k_factor": 4}):
        index, info = build_index(x, spec)
        save_index(index, tmp_path / "i.faiss")
        loaded = load_index(tmp_path / "i.faiss", info)
        _, ids = search(loaded, info, x[:100], 10)
        assert recall_vs_exact(ids, truth, 10) > 0.8, info
    plan = index_plan({"type": "ivf_pq", "nlist": "auto", "pq_m": 12, "pq_nbits": 8}, 2000, 32)
    assert plan["params"]["pq_m"] == 8 and plan["params"]["nlist"] == 51  # 8 divides 32; 2000 // 39
    assert plan["factory"] == "IVF51,PQ8x8np"
    with pytest.raises(ConfigError, match=r"index\.type is 'lsh'"):
        index_plan({"type": "lsh"}, 10, 4)
