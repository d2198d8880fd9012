"""FAISS indexes over L2-normalised embeddings (inner product = cosine similarity).

Index specs come from `conf/index/{flat,hnsw,ivf_pq}.yaml`; each is built with
`faiss.index_factory`, and its effective parameters (after `auto` values are resolved for the
catalogue size) are returned as `info = {"type", "factory", "params"}`, stored in manifest.json.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from fashionlab.errors import ConfigError

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivf_pq")


def _divisor_at_most(d: int, m: int) -> int:
    return max(x for x in range(1, min(m, d) + 1) if d % x == 0)


def index_plan(spec: Mapping[str, Any], num_items: int, dim: int) -> dict[str, Any]:
    """The factory string and effective parameters of an index spec for `num_items` x `dim`."""
    kind = spec.get("type")
    if kind == "flat":
        return {"type": "flat", "factory": "Flat", "params": {}}
    if kind == "hnsw":
        params = {"M": int(spec.get("M", 32)), "efConstruction": int(spec.get("efConstruction", 200)),
                  "efSearch": int(spec.get("efSearch", 128))}
        return {"type": "hnsw", "factory": f"HNSW{params['M']},Flat", "params": params}
    if kind == "ivf_pq":
        nlist = spec.get("nlist", "auto")
        if nlist in (None, "auto"):
            nlist = round(4 * math.sqrt(num_items))
        nlist = int(max(1, min(int(nlist), num_items // 39 or 1)))
        pq_m = int(spec.get("pq_m", 64))
        m = _divisor_at_most(dim, pq_m)
        if m != pq_m:
            log.info("index.pq_m=%d does not divide dimension %d: using %d", pq_m, dim, m)
        nbits = int(min(int(spec.get("pq_nbits", 8)), max(1, int(math.log2(max(num_items, 2))))))
        params = {"nlist": nlist, "nprobe": int(min(int(spec.get("nprobe", 16)), nlist)), "pq_m": m,
                  "pq_nbits": nbits, "refine_k_factor": float(spec.get("refine_k_factor", 0) or 0)}
        # "np": no polysemous training (on by default in the factory; minutes of training for
        # codes only polysemous search uses)
        factory = f"IVF{nlist},PQ{m}x{nbits}np" + (",RFlat" if params["refine_k_factor"] > 0 else "")
        return {"type": "ivf_pq", "factory": factory, "params": params}
    raise ConfigError(f"index.type is {kind!r}; expected one of {', '.join(INDEX_TYPES)}")


def apply_search_params(index: faiss.Index, info: Mapping[str, Any]) -> None:
    """Set efSearch / nprobe / k_factor on a built or loaded index."""
    params = info.get("params", {})
    if info["type"] == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = int(params["efSearch"])
    elif info["type"] == "ivf_pq":
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
        if params.get("refine_k_factor"):
            faiss.downcast_index(index).k_factor = float(params["refine_k_factor"])


def build_index(embeddings: np.ndarray, spec: Mapping[str, Any]) -> tuple[faiss.Index, dict[str, Any]]:
    """Train (where needed) and fill an inner-product index; returns (index, info)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"build_index: expected a non-empty (N, D) array, got shape {x.shape}")
    info = index_plan(spec, len(x), x.shape[1])
    index = faiss.index_factory(x.shape[1], info["factory"], faiss.METRIC_INNER_PRODUCT)
    if info["type"] == "hnsw":
        faiss.downcast_index(index).hnsw.efConstruction = int(info["params"]["efConstruction"])
    if not index.is_trained:
        index.train(x)
    index.add(x)
    apply_search_params(index, info)
    return index, info


def search_parameters(info: Mapping[str, Any], k: int, selector: Any = None) -> faiss.SearchParameters:
    params = info.get("params", {})
    if info["type"] == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(int(params["efSearch"]), k))
    if info["type"] == "ivf_pq":
        ivf = faiss.SearchParametersIVF(sel=selector, nprobe=int(params["nprobe"]))
        if params.get("refine_k_factor"):
            return faiss.IndexRefineSearchParameters(sel=selector, k_factor=float(params["refine_k_factor"]),
                                                     base_index_params=ivf)
        return ivf
    return faiss.SearchParameters(sel=selector)


def search(index: faiss.Index, info: Mapping[str, Any], queries: np.ndarray, k: int,
           allowed_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores (Q, k) float32, ids (Q, k) int64), best first; id -1 where fewer than k were found.
    `allowed_ids` restricts the search to those gallery ids (a faiss IDSelector)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.shape[1] != index.d:
        raise ValueError(f"queries have dimension {q.shape[1]}, the index {index.d}")
    selector = None
    if allowed_ids is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
    # faiss.contrib.torch_utils (imported by some libraries) replaces `search` with a version
    # without `params`; the NumPy one stays available as `search_numpy`.
    search_numpy = getattr(index, "search_numpy", index.search)
    scores, ids = search_numpy(q, int(k), params=search_parameters(info, int(k), selector))
    return scores, ids


def save_index(index: faiss.Index, path: str | Path) -> None:
    faiss.write_index(index, str(path))


def load_index(path: str | Path, info: Mapping[str, Any]) -> faiss.Index:
    index = faiss.read_index(str(path))
    apply_search_params(index, info)
    return index
