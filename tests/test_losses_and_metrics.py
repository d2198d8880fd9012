"""Losses and metrics per task kind: cross-entropy (weights, smoothing, ignored labels),
BCE-with-logits for multilabel tasks, per-task weights, and heads."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fashionlab.errors import ConfigError
from fashionlab.models.heads import build_head
from fashionlab.models.losses import MultiTaskLoss, balanced_class_weights
from fashionlab.models.metrics import StageMetrics
from fashionlab.tasks import TaskSpec

COLOUR = TaskSpec("colour", "multiclass", ("red", "green", "blue"))
PATTERN = TaskSpec("pattern", "multilabel", ("striped", "checked", "dotted", "floral"))


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = {"colour": torch.randn(8, 3, generator=g), "pattern": torch.randn(8, 4, generator=g)}
    targets = {"colour": torch.tensor([0, 1, 2, 0, 1, 2, -1, 0]),
               "pattern": (torch.rand(8, 4, generator=g) > 0.5).float()}
    return logits, targets


def test_cross_entropy_and_bce_with_task_weights():
    logits, targets = batch()
    loss = MultiTaskLoss([COLOUR, PATTERN], label_smoothing=0.1, task_weights={"pattern": 0.5})
    total, parts = loss(logits, targets)
    ce = F.cross_entropy(logits["colour"], targets["colour"], ignore_index=-1, label_smoothing=0.1)
    bce = F.binary_cross_entropy_with_logits(logits["pattern"], targets["pattern"])
    torch.testing.assert_close(parts["colour"], ce)
    torch.testing.assert_close(parts["pattern"], bce)
    torch.testing.assert_close(total, ce + 0.5 * bce)


def test_balanced_weights():
    np.testing.assert_allclose(balanced_class_weights(np.array([10, 30, 0])), [2.0, 2 / 3, 0.0])
    logits, targets = batch()
    loss = MultiTaskLoss([COLOUR, PATTERN], class_weights="balanced")
    loss.set_class_counts({"colour": np.array([10, 30, 60]), "pattern": np.array([5, 50, 95, 1])},
                          num_samples=100)
    _, parts = loss(logits, targets)
    weight = balanced_class_weights(np.array([10, 30, 60]))
    ce = F.cross_entropy(logits["colour"], targets["colour"], weight=weight, ignore_index=-1)
    pos_weight = torch.tensor([95 / 5, 50 / 50, 5 / 95, 99 / 1])
    bce = F.binary_cross_entropy_with_logits(logits["pattern"], targets["pattern"],
                                             pos_weight=pos_weight)
    torch.testing.assert_close(parts["colour"], ce)
    torch.testing.assert_close(parts["pattern"], bce)


def test_bad_loss_settings_name_their_key():
    with pytest.raises(ConfigError, match=r"model\.loss\.class_weights is 'inverse'"):
        MultiTaskLoss([COLOUR], class_weights="inverse")
    with pytest.raises(ConfigError, match=r"model\.loss\.task_weights names unknown task\(s\) size"):
        MultiTaskLoss([COLOUR], task_weights={"size": 2.0})


def test_metrics_for_both_kinds():
    metrics = StageMetrics([COLOUR, PATTERN])
    logits = {"colour": torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]]),
              "pattern": torch.tensor([[3.0, -3, -3, -3], [-3, 3.0, 3.0, -3], [3.0, 3, -3, -3],
                                       [-3, -3, -3, 3.0]])}
    targets = {"colour": torch.tensor([0, 1, 2, -1]),
               "pattern": torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])}
    metrics.update(logits, targets)
    values = metrics.compute("val")
    assert set(values) == {f"val/{t}/{m}" for t in ("colour", "pattern")
                           for m in ("acc", "f1_macro", "f1_weighted")}
    assert values["val/colour/acc"].item() == pytest.approx(2 / 3)  # the -1 label is ignored
    assert values["val/pattern/acc"].item() == pytest.approx(15 / 16)
    details = metrics.details()
    assert details["colour"]["confusion"].tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert details["pattern"]["confusion"].shape == (4, 2, 2)
    assert details["pattern"]["per_class_f1"].shape == (4,)


def test_heads():
    linear = build_head(64, 5, type="linear", dropout=0.1)
    mlp = build_head(64, 5, type="mlp", hidden_dims=[32, 16], dropout=0.3)
    assert [type(m).__name__ for m in mlp] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert mlp(torch.randn(2, 64)).shape == linear(torch.randn(2, 64)).shape == (2, 5)
    with pytest.raises(ConfigError, match=r"model\.head\.type is 'conv'"):
        build_head(64, 5, type="conv")
