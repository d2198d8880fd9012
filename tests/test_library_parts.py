"""The parts that are now the libraries' own: faiss k-means, Lightning's BaseFinetuning,
torchmetrics per-class tables and confusion plots, DataFrame.to_markdown, one JSON writer and
file hasher, provenance, and the W&B run finished when a run fails."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.callbacks import Callback as LightningCallback
from PIL import Image
from wandb_records import read_records

from fashionlab.evaluation.classification import per_class_table
from fashionlab.evaluation.plots import plot_confusion
from fashionlab.evaluation.report import markdown_table
from fashionlab.fileio import file_digest, write_json
from fashionlab.provenance import environment_info, git_info
from fashionlab.recommend.outfit import kmeans
from fashionlab.tasks import TaskSpec
from fashionlab.training.callbacks import FreezeThenUnfreeze

from conftest import ROOT, SCRIPT_ENV, tiny_overrides

TESTS = Path(__file__).resolve().parent


# --- faiss k-means ---------------------------------------------------------------------------

def test_kmeans_is_seeded_and_keeps_every_cluster():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    first, centres = kmeans(x, 4, seed=7)
    again, centres_again = kmeans(x, 4, seed=7)
    assert np.array_equal(first, again) and np.array_equal(centres, centres_again)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-5)
    assert sorted(set(first)) == [0, 1, 2, 3]
    same = np.repeat(x[:1], 5, axis=0)  # all items alike: every cluster still gets one
    assert sorted(set(kmeans(same, 3)[0])) == [0, 1, 2]
    assert sorted(kmeans(x[:3], 3)[0]) == [0, 1, 2]


# --- BaseFinetuning ----------------------------------------------------------------------------

def test_freeze_schedule_is_lightnings_base_finetuning():
    callback = FreezeThenUnfreeze(freeze_epochs=1, train_bn=False)
    assert isinstance(callback, BaseFinetuning)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    module = torch.nn.Module()
    module.net = torch.nn.Module()
    module.net.backbone = backbone
    callback.freeze_before_training(module)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not backbone[1].training  # frozen BatchNorm: eval mode, statistics kept
    callback.unfreeze_step = 3
    callback._apply(3, module)
    assert all(p.requires_grad for p in backbone.parameters()) and backbone[1].training
    with_bn = FreezeThenUnfreeze(freeze_epochs=1, train_bn=True)
    with_bn.freeze_before_training(module)
    assert [p.requires_grad for p in backbone.parameters()] == [False, False, True, True]
    assert "internal_optimizer_metadata" in with_bn.state_dict()


# --- torchmetrics tables, plots, markdown -------------------------------------------------------

@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_per_class_table_matches_sklearn(kind):
    metrics = pytest.importorskip("sklearn.metrics")
    task = TaskSpec("t", kind, tuple("abcd"))
    g = torch.Generator().manual_seed(0)
    if kind == "multiclass":
        probs = torch.rand(60, 4, generator=g).softmax(dim=1)
        targets = torch.randint(0, 3, (60,), generator=g)  # class d never occurs
        targets[:5] = -1  # unknown labels are left out
        keep = targets >= 0
        y_true, y_pred = targets[keep].numpy(), probs.argmax(dim=1)[keep].numpy()
    else:
        probs = torch.rand(60, 4, generator=g)
        targets = (torch.rand(60, 4, generator=g) > 0.6).int()
        y_true, y_pred = targets.numpy(), (probs > 0.5).int().numpy()
    table = per_class_table(task, probs, targets)
    # undefined values (precision of a class never predicted, recall over no item) are missing
    p, r, f, s = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(4)) if kind == "multiclass" else None, zero_division=np.nan)
    assert list(table.columns) == ["class", "precision", "recall", "f1", "support"]
    np.testing.assert_allclose(table["precision"], p, atol=1e-6)
    np.testing.assert_allclose(table["recall"], r, atol=1e-6)
    np.testing.assert_allclose(table["f1"], np.where(s > 0, np.nan_to_num(f), np.nan), atol=1e-6)
    assert table["support"].tolist() == s.tolist()


def test_markdown_table_and_confusion_plot(tmp_path):
    text = markdown_table(["task", "acc", "items"], [["article", 0.123456, 80], ["category", math.nan, 7]])
    lines = text.splitlines()
    assert len(lines) == 4 and lines[1].startswith("|:--")
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["article", "0.1235", "80"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["category", "–", "7"]
    path = plot_confusion(np.array([[5, 1], [2, 7]]), ["a", "b"], "test t", tmp_path / "c.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


# --- one JSON writer, one hasher, provenance ------------------------------------------------------

def test_write_json_and_file_digest(tmp_path):
    path = write_json(tmp_path / "sub" / "x.json",
                      {"b": np.float32(0.5), "a": [np.int64(3), math.inf], "arr": np.arange(2)},
                      sort_keys=True)
    assert path.read_text().startswith('{\n  "a"')
    assert json.loads(path.read_text()) == {"a": [3, None], "arr": [0, 1], "b": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no partial file left
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 << 20))
    assert file_digest(blob) == hashlib.sha256(blob.read_bytes()).hexdigest()
    assert file_digest(blob, "md5") == hashlib.md5(blob.read_bytes()).hexdigest()


def test_provenance(tmp_path):
    assert git_info(tmp_path) == {"git_commit": None, "git_dirty": None}
    assert len(git_info(ROOT)["git_commit"] or "") in (0, 40)
    env = environment_info()
    assert env["cpu_cores"] == os.cpu_count()
    assert torch.__version__.startswith(env["torch_version"])


# --- W&B run finished when a run fails ----------------------------------------------------------

class Fail(LightningCallback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            raise RuntimeError("failing on purpose")


def exit_codes(run_dir: Path) -> list[int]:
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    records = read_records(next(runs[0].glob("run-*.wandb")))
    return [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]


def test_failing_run_finishes_its_wandb_run(compose_cfg, fmnist_dir, tmp_path, monkeypatch):
    import wandb

    from fashionlab.training.run import train

    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    overrides = [o for o in tiny_overrides(fmnist_dir, out) if not o.startswith("logger=")]
    cfg = compose_cfg([*overrides, "logger=wandb", "data.image_size=32", "backbone.pretrained=false"])
    with pytest.raises(RuntimeError, match="failing on purpose"):
        train(cfg, extra_callbacks=[Fail()])
    assert wandb.run is None, "the failed run's W&B run is still open"
    assert exit_codes(out) == [1]


FAILING_SCRIPT = """
import runpy, sys
sys.path.insert(0, {tests!r})
from test_library_parts import Fail
from fashionlab.training import run
configured = run.build_callbacks
run.build_callbacks = lambda cfg, has_logger: [*configured(cfg, has_logger), Fail()]
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def session_processes(sid: int) -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            found.append(stat.parent.name)
    return found


@pytest.mark.slow
def test_failing_train_script_leaves_no_process_behind(fmnist_dir, tmp_path):
    out = tmp_path / "run"
    overrides = [o for o in tiny_overrides(fmnist_dir, out) if not o.startswith("logger=")]
    script = tmp_path / "failing_train.py"
    script.write_text(textwrap.dedent(FAILING_SCRIPT.format(tests=str(TESTS))))
    process = subprocess.Popen(
        [sys.executable, str(script), *overrides, "logger=wandb", "data.image_size=32",
         "backbone.pretrained=false"], cwd=ROOT, start_new_session=True,
        env={**os.environ, **SCRIPT_ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0 and "failing on purpose" in output, output[-3000:]
    assert exit_codes(out) == [1]
    assert session_processes(process.pid) == [], "processes of the failed run are still running"
