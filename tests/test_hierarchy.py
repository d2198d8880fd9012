"""Hierarchy-constrained predictions and full labels."""

import torch

from fashionlab.inference.labels import predicted_indices
from fashionlab.models.hierarchy import constrained_predictions, full_label, hierarchy_order
from fashionlab.models.metrics import StageMetrics
from fashionlab.tasks import tasks_from_config

TASKS = tasks_from_config({
    "item": {"kind": "multiclass", "classes": ["sandals", "sneakers", "jeans", "sunglasses"],
             "parent": "primary",
             "parent_of": {"sandals": "shoes", "sneakers": "shoes", "jeans": "trousers",
                           "sunglasses": "glasses"}},
    "gender": {"kind": "multiclass", "classes": ["female", "male"]},
    "primary": {"kind": "multiclass", "classes": ["shoes", "trousers", "glasses"]},
    "colours": {"kind": "multilabel", "classes": ["red", "blue"]},
})


def test_child_is_chosen_among_the_children_of_the_predicted_parent():
    logits = {
        # row 0: the best item overall is jeans, but the predicted primary is shoes
        # row 1: item and primary agree
        "item": torch.tensor([[1.0, 2.0, 5.0, 0.0], [0.0, 0.0, 0.0, 3.0]]),
        "primary": torch.tensor([[4.0, 1.0, 0.0], [0.0, 0.0, 2.0]]),
        "gender": torch.tensor([[0.2, 0.1], [0.0, 1.0]]),
        "colours": torch.tensor([[1.0, -1.0], [-2.0, 0.5]]),
    }
    assert logits["item"].argmax(1).tolist() == [2, 3]  # unconstrained: jeans for a shoe
    preds = constrained_predictions(TASKS, logits)
    assert list(preds) == ["item", "gender", "primary", "colours"]
    assert preds["primary"].tolist() == [0, 2]
    assert preds["item"].tolist() == [1, 3]  # sneakers: best child of shoes
    assert preds["gender"].tolist() == [0, 1]
    assert preds["colours"].tolist() == [[1, 0], [0, 1]]


def test_constrained_accuracy_metric_differs_from_plain_accuracy():
    metrics = StageMetrics([t for t in TASKS if t.kind == "multiclass"])
    logits = {"item": torch.tensor([[1.0, 2.0, 5.0, 0.0]]), "primary": torch.tensor([[4.0, 1.0, 0.0]]),
              "gender": torch.tensor([[1.0, 0.0]])}
    targets = {"item": torch.tensor([1]), "primary": torch.tensor([0]), "gender": torch.tensor([0])}
    metrics.update(logits, targets)
    scalars = metrics.compute("val")
    assert scalars["val/item/acc"] == 0.0 and scalars["val/item/acc_constrained"] == 1.0
    assert "val/primary/acc_constrained" not in scalars


def test_full_label_orders_coarse_to_fine():
    assert [t.name for t in hierarchy_order(TASKS)] == ["gender", "primary", "colours", "item"]
    names = {"item": "sandals", "primary": "shoes", "gender": "female"}
    assert full_label([TASKS[2], TASKS[1], TASKS[0]], names) == "shoes-female-sandals"
    assert full_label(TASKS, {"item": "sunglasses", "primary": "glasses"}) == "glasses-sunglasses"


def test_gallery_predictions_follow_the_hierarchy():
    """evaluate.py's `pred_<task>` columns use the same constrained decoding, on probabilities."""
    probs = {
        "item": torch.tensor([[0.1, 0.2, 0.6, 0.1]]).numpy(),
        "primary": torch.tensor([[0.7, 0.2, 0.1]]).numpy(),
        "gender": torch.tensor([[0.4, 0.6]]).numpy(),
        "colours": torch.tensor([[0.7, 0.3]]).numpy(),
    }
    preds = predicted_indices(TASKS, probs)
    assert preds["primary"].tolist() == [0]
    assert preds["item"].tolist() == [1]  # sneakers, not the jeans of the plain argmax
    assert preds["gender"].tolist() == [1]
    assert preds["colours"].tolist() == [[1, 0]]
