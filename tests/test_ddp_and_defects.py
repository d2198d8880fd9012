"""Metrics count every item once (2-process DDP), multilabel metrics threshold probabilities,
and the freeze schedule follows the steps actually planned (trainer.max_steps)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from test_training import METRIC_NAMES
from torchmetrics.classification import MultilabelAccuracy, MultilabelF1Score

from fashionlab.data.readers.fashion_mnist import FILES
from fashionlab.data.readers.idx import write_idx
from fashionlab.evaluation.classification import classification_report
from fashionlab.models.metrics import TaskMetrics
from fashionlab.tasks import TaskSpec

from conftest import fork_script, make_fashion_mnist_like, tiny_overrides


def write_odd_fashion_mnist(folder: Path, n_train: int = 160, n_test: int = 79) -> Path:
    """Fashion-MNIST-like IDX files whose test split has an odd number of items."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = make_fashion_mnist_like(-(-n // 10), seed)
        image_name, label_name = FILES[split]
        write_idx(folder / image_name, images[:n])
        write_idx(folder / label_name, labels[:n])
    return folder


def confusion_total(run_dir: Path, stage: str, task: str) -> int:
    table = pd.read_csv(run_dir / "tables" / f"{stage}_{task}_confusion.csv", index_col=0)
    return int(table.to_numpy().sum())


@pytest.mark.slow
def test_ddp_val_and_test_metrics_count_each_item_once(tmp_path):
    """Two CPU processes (gloo) on splits of odd size: the distributed sampler would pad each
    split to an even length by repeating items; the confusion matrices must sum to the sizes."""
    data = write_odd_fashion_mnist(tmp_path / "fm")
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny_overrides(data, run_dir) if not o.startswith("data.val_size=")]
    proc = fork_script(
        "train.py", *overrides, "data.val_size=41", "data.eval_batch_size=8",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "backbone.pretrained=false", "data.image_size=32", "training.freeze_epochs=0",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(METRIC_NAMES) <= set(metrics)
    assert (metrics["data_num_val"], metrics["data_num_test"]) == (41, 79)
    for task in ("article", "category"):
        assert confusion_total(run_dir, "val", task) == 41
        assert confusion_total(run_dir, "test", task) == 79
    for stage in ("val", "test"):
        table = pd.read_csv(run_dir / "tables" / f"{stage}_article_confusion.csv", index_col=0)
        matrix = table.to_numpy()
        assert metrics[f"{stage}/article/acc"] == pytest.approx(np.trace(matrix) / matrix.sum())


STYLE = TaskSpec("style", "multilabel", ("striped", "floral", "plain"))


def logits_in_unit_interval() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that all lie in [0.1, 0.9] (so every sigmoid is above 0.5) and random targets."""
    g = torch.Generator().manual_seed(0)
    logits = 0.1 + 0.8 * torch.rand(32, 3, generator=g)
    targets = (torch.rand(32, 3, generator=g) > 0.5).int()
    return logits, targets


def expected_from_sigmoid(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    preds = (logits.sigmoid() > 0.5).int()
    return {"acc": float(MultilabelAccuracy(num_labels=3, average="micro")(preds, targets)),
            "f1_macro": float(MultilabelF1Score(num_labels=3, average="macro")(preds, targets))}


def test_multilabel_metrics_treat_logits_in_unit_interval_as_logits():
    logits, targets = logits_in_unit_interval()
    expected = expected_from_sigmoid(logits, targets)
    assert expected["acc"] == pytest.approx(float(targets.float().mean()))  # all predicted positive
    metrics = TaskMetrics(STYLE)
    metrics.update(logits, targets)
    got = {k: float(v) for k, v in metrics.compute().items()}
    assert got["acc"] == pytest.approx(expected["acc"])
    assert got["f1_macro"] == pytest.approx(expected["f1_macro"])
    confusion = metrics.details()["confusion"]
    assert int(confusion[:, :, 0].sum()) == 0  # no label predicted negative


def test_evaluation_report_thresholds_probabilities_once():
    logits, targets = logits_in_unit_interval()
    report = classification_report([STYLE], {"style": logits.sigmoid().numpy()},
                                   {"style": targets.numpy()})
    expected = expected_from_sigmoid(logits, targets)
    assert report["style"]["acc"] == pytest.approx(expected["acc"])
    assert report["style"]["f1_macro"] == pytest.approx(expected["f1_macro"])


def test_multiclass_metrics_from_logits_are_those_of_the_argmax():
    task = TaskSpec("article", "multiclass", tuple("abcd"))
    g = torch.Generator().manual_seed(1)
    logits = torch.rand(40, 4, generator=g)  # also inside [0, 1]
    targets = torch.randint(0, 4, (40,), generator=g)
    metrics = TaskMetrics(task)
    metrics.update(logits, targets)
    assert float(metrics.compute()["acc"]) == pytest.approx(
        float((logits.argmax(dim=1) == targets).float().mean()))


class BackboneRecorder(L.Callback):
    """Per optimizer step: is the backbone trainable, and its learning rate; did its weights move."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.initial = {n: p.detach().clone() for n, p in pl_module.net.backbone.named_parameters()}
        self.trainable: dict[int, bool] = {}
        self.lr: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        self.trainable[step] = all(p.requires_grad for p in pl_module.net.backbone.parameters())
        self.lr[step] = next(g["lr"] for g in trainer.optimizers[0].param_groups
                             if g["name"] == "backbone")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.moved = any(not torch.equal(p.detach(), self.initial[n])
                         for n, p in pl_module.net.backbone.named_parameters())


@pytest.mark.parametrize(("max_steps", "unfreeze_step"), [
    (10, 7),  # 120 train items / batch 16 = 7 steps an epoch: unfrozen after freeze_epochs=1
    (5, 2),   # the budget ends within the frozen epoch: unfrozen half-way instead
])
@pytest.mark.slow
def test_max_steps_run_unfreezes_the_backbone(compose_cfg, fmnist_dir, tmp_path, max_steps,
                                              unfreeze_step):
    from fashionlab.training.run import train

    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path / "run"), "test=false",
                       "trainer.max_epochs=-1", f"trainer.max_steps={max_steps}",
                       "trainer.limit_val_batches=1", "training.freeze_epochs=1",
                       "backbone.pretrained=false", "data.image_size=32"])
    recorder = BackboneRecorder()
    train(cfg, extra_callbacks=[recorder])
    assert sorted(recorder.trainable) == list(range(max_steps))
    assert [s for s, on in recorder.trainable.items() if on] == list(range(unfreeze_step, max_steps))
    assert all(recorder.lr[s] == 0 for s in range(unfreeze_step))
    assert all(recorder.lr[s] > 0 for s in range(unfreeze_step, max_steps))
    assert recorder.moved


def test_endless_run_with_a_schedule_is_a_config_error(compose_cfg, fmnist_dir, tmp_path):
    from fashionlab.errors import ConfigError
    from fashionlab.training.run import train

    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path / "run"), "trainer.max_epochs=-1",
                       "backbone.pretrained=false", "data.image_size=32"])
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        train(cfg)


def test_eval_samplers_split_items_without_repeats(compose_cfg, fmnist_dir, tmp_path):
    """Without launching processes: the val/test samplers of ranks 0..2 partition each split."""
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from fashionlab.errors import ConfigError

    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path / "run"), "data.val_size=41"])
    dm = instantiate(cfg.data, _recursive_=False)
    dm.setup()
    for split in ("val", "test"):
        seen = []
        for rank in range(3):
            dm.trainer = SimpleNamespace(world_size=3, global_rank=rank)
            seen += list(dm.eval_sampler(split))
        assert sorted(seen) == list(range(len(dm.splits[split])))
    dm.trainer = SimpleNamespace(world_size=100, global_rank=0)
    with pytest.raises(ConfigError, match="val split has 41 items, fewer than the 100 processes"):
        dm.val_dataloader()
