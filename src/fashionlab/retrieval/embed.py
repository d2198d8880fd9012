"""Embeddings and class probabilities of a trained model, in one pass over a data loader."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fashionlab.training.module import MultiTaskClassifier


def task_probabilities(module: MultiTaskClassifier,
                       logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Softmax for multiclass tasks, sigmoid for multilabel ones."""
    return {t.name: (logits[t.name].softmax(-1) if t.kind == "multiclass" else logits[t.name].sigmoid())
            for t in module.tasks}


def embed_batch(module: MultiTaskClassifier, images: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(L2-normalised pooled backbone features, {task: probabilities}) of one batch."""
    images = images.to(module.device).contiguous(memory_format=module.memory_format)
    features = module.net.embed(images)
    logits = {name: head(features) for name, head in module.net.heads.items()}
    return F.normalize(features.float(), dim=-1), task_probabilities(module, logits)


def extract(
    module: MultiTaskClassifier,
    dataloader: DataLoader,
    return_targets: bool = False,
    progress: bool | None = None,
    desc: str = "embedding",
) -> tuple[np.ndarray, dict[str, np.ndarray]] | tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings (N, D) float32, L2-normalised, and {task: probs (N, C)} in loader order.

    Runs under torch.inference_mode() with the module in eval mode and a tqdm progress bar
    (`progress=None`: shown on a terminal only). With `return_targets`, also returns
    {"index": positions (N,), "targets": {task: labels}} collected from the batches.
    """
    was_training = module.training
    module.eval()
    embeddings: list[torch.Tensor] = []
    probs: dict[str, list[torch.Tensor]] = {t.name: [] for t in module.tasks}
    targets: dict[str, list[torch.Tensor]] = {t.name: [] for t in module.tasks}
    positions: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            for batch in tqdm(dataloader, desc=desc, unit="batch", disable=None if progress is None
                              else not progress, leave=False):
                features, batch_probs = embed_batch(module, batch["image"])
                embeddings.append(features.cpu())
                for name, value in batch_probs.items():
                    probs[name].append(value.float().cpu())
                if return_targets:
                    for name in targets:
                        targets[name].append(batch["targets"][name].cpu())
                    positions.append(torch.as_tensor(batch["index"]).cpu())
    finally:
        module.train(was_training)
    if not embeddings:
        raise ValueError("extract: the data loader yielded no batches")
    emb = torch.cat(embeddings).numpy().astype(np.float32, copy=False)
    out_probs = {name: torch.cat(values).numpy() for name, values in probs.items()}
    if not return_targets:
        return emb, out_probs
    extra = {"index": torch.cat(positions).numpy().astype(np.int64),
             "targets": {name: torch.cat(values).numpy() for name, values in targets.items()}}
    return emb, out_probs, extra
