"""evaluate.py evaluates on the data the checkpoint was trained on: it imposes the checkpoint's
tasks (classes and their order), and refuses data whose fingerprint or val/test items differ from
the ones stored in the checkpoint unless data.allow_changed=true. The recommend side refuses an
index built from data other than the checkpoint's training data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from fixtures_images import write_tree
from fixtures_runs import compose_config, evaluate_run

from fashionlab.errors import DataChangedError, FashionlabError, ManifestMismatchError

from conftest import run_entry, tiny_overrides

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_eval_data")

CLASSES = ("coat", "dress", "shirt")
EVAL_FAST = ("wandb.log=false", "retrieval.ks=[1,3]", "retrieval.k=3", "retrieval.recall_vs_exact_k=3",
             "examples.k=3", "examples.num_queries=2")


def write_folder(root: Path, classes: tuple[str, ...] = CLASSES, n: int = 10) -> Path:
    write_tree(root, {c: n for c in classes}, ext=".png")
    return root


def train_folder_run(data_root: Path, out_dir: Path) -> Path:
    """A seconds-long run on an image folder (EfficientNet-Lite0 at 32 px, random init)."""
    from fashionlab.training.run import train

    cfg = compose_config("train", [
        "data=image_folder", f"data.root={data_root}", "data.image_size=32", "data.batch_size=8",
        "data.eval_batch_size=16", "data.num_workers=0", "data.val_size=3", "data.test_size=6",
        "backbone=efficientnet_lite0", "backbone.pretrained=false", "logger=none", "trainer=cpu",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null", "training.freeze_epochs=0",
        f"hydra.run.dir={out_dir}"])
    train(cfg)
    return out_dir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("eval-data")
    data = write_folder(base / "data")
    return data, train_folder_run(data, base / "run")


def evaluate(run: Path, out: Path, *extra: str) -> dict:
    evaluate_run(run, out, (*EVAL_FAST, *extra))
    return json.loads((out / "report.json").read_text())


def trained_fingerprint(run: Path) -> str:
    return json.loads((run / "metrics.json").read_text())["data_fingerprint"]


def stored_identity(ckpt: Path) -> dict:
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    found = [v["data_identity"] for v in checkpoint.values() if isinstance(v, dict) and "data_identity" in v]
    assert len(found) == 1, f"no data identity in {sorted(checkpoint)}"
    return found[0]


def folder_labels(gallery: pd.DataFrame) -> list[str]:
    return [Path(p).parent.name for p in gallery["path"]]


@pytest.mark.slow
def test_checkpoint_stores_fingerprint_and_split_items(folder_run):
    data, run = folder_run
    identity = stored_identity(run / "checkpoints" / "best.ckpt")
    assert identity["fingerprint"] == trained_fingerprint(run)
    assert set(identity["splits"]) == {"val", "test"}
    test = identity["splits"]["test"]
    assert len(test["items"]) == 6 and len(test["sha256"]) == 64
    assert all((data / p).is_file() for p in test["items"]), "items are paths relative to data.root"


@pytest.mark.slow
def test_same_data_and_an_identical_copy_evaluate(folder_run, tmp_path):
    data, run = folder_run
    report = evaluate(run, tmp_path / "same")
    assert report["data_identity_checked"] is True and report["data_changed"] is False
    assert report["data_fingerprint"] == report["training_data_fingerprint"] == trained_fingerprint(run)
    copy = shutil.copytree(data, tmp_path / "copy")
    report = evaluate(run, tmp_path / "copy-eval", f"data.root={copy}")
    assert report["data_changed"] is False and report["data_fingerprint"] == trained_fingerprint(run)
    gallery = pd.read_parquet(tmp_path / "copy-eval" / "gallery.parquet")
    assert gallery["label"].tolist() == folder_labels(gallery)


@pytest.mark.slow
def test_two_class_copy_is_refused(folder_run, tmp_path):
    _, run = folder_run
    two = write_folder(tmp_path / "two", CLASSES[1:])
    with pytest.raises(FashionlabError) as err:
        evaluate(run, tmp_path / "out", f"data.root={two}")
    message = str(err.value)
    assert "\n" not in message
    assert trained_fingerprint(run)[:12] in message and "data.allow_changed=true" in message
    assert "coat/" in message, "names a first differing item (a coat image no longer there)"
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.slow
def test_added_image_is_refused_unless_allowed(folder_run, tmp_path):
    data, run = folder_run
    grown = shutil.copytree(data, tmp_path / "grown")
    shutil.copy(grown / "dress" / "img000.png", grown / "dress" / "img999.png")
    with pytest.raises(FashionlabError, match=r"data\.allow_changed=true"):
        evaluate(run, tmp_path / "refused", f"data.root={grown}")
    report = evaluate(run, tmp_path / "allowed", f"data.root={grown}", "data.allow_changed=true")
    assert report["data_changed"] is True and report["data_identity_checked"] is True
    assert report["training_data_fingerprint"] == trained_fingerprint(run)
    assert report["data_fingerprint"] != report["training_data_fingerprint"]
    md = (tmp_path / "allowed" / "report.md").read_text()
    assert "data.allow_changed" in md and report["training_data_fingerprint"][:16] in md


@pytest.mark.slow
def test_a_photo_changed_with_its_times_restored_is_refused(tmp_path):
    """Middle bytes of one image rewritten at the same size and its mtime set back (`touch -r`)
    after training: the fingerprint hashes every byte (the stat cache sees the moved ctime)."""
    from test_cache_trust import change_middle_keep_times, clock_moved_past, write_bmp_folder

    paths = write_bmp_folder(tmp_path / "data")  # 12 KiB files: the middle is not in the first/last 4 KiB
    run = train_folder_run(tmp_path / "data", tmp_path / "run")
    assert evaluate(run, tmp_path / "same")["data_changed"] is False
    clock_moved_past(paths[0], tmp_path / "probe")
    for path in paths:
        change_middle_keep_times(path)
    with pytest.raises(DataChangedError, match=r"data\.allow_changed=true"):
        evaluate(run, tmp_path / "changed")


@pytest.mark.slow
def test_gallery_labels_use_the_checkpoints_class_order(folder_run, tmp_path):
    """Without "coat", `classes: auto` would make dress class 0; the checkpoint's order is imposed."""
    _, run = folder_run
    two = write_folder(tmp_path / "two", CLASSES[1:])
    report = evaluate(run, tmp_path / "out", f"data.root={two}", "data.allow_changed=true")
    gallery = pd.read_parquet(tmp_path / "out" / "gallery.parquet")
    assert gallery["label"].tolist() == folder_labels(gallery)
    assert set(gallery["pred_label"]) <= set(CLASSES)
    per_class = pd.DataFrame(report["classification"]["label"]["per_class"])
    assert per_class.iloc[:, 0].tolist() == list(CLASSES)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["tasks"]["label"]["classes"] == list(CLASSES)
    assert manifest["data"]["tasks"]["label"]["classes"] == list(CLASSES)


@pytest.mark.slow
def test_old_checkpoint_without_identity_is_evaluated_with_a_warning(folder_run, tmp_path, caplog):
    _, run = folder_run
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    checkpoint = {k: v for k, v in checkpoint.items() if not (isinstance(v, dict) and "data_identity" in v)}
    torch.save(checkpoint, old / "checkpoints" / "best.ckpt")
    with caplog.at_level("WARNING"):
        report = evaluate(old, tmp_path / "out")
    assert report["data_identity_checked"] is False
    assert any("data identity" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_cli_refusal_is_one_line(folder_run, tmp_path):
    _, run = folder_run
    two = write_folder(tmp_path / "two", CLASSES[1:])
    result = run_entry("evaluate.py", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"data.root={two}",
                       f"hydra.run.dir={tmp_path / 'out'}", *EVAL_FAST)
    assert result.returncode != 0
    assert "data.allow_changed=true" in result.stderr


@pytest.mark.slow
def test_index_from_other_data_is_refused_by_recommend(folder_run, tmp_path):
    from fashionlab.recommend.catalogue_io import open_index

    data, run = folder_run
    grown = shutil.copytree(data, tmp_path / "grown")
    shutil.copy(grown / "shirt" / "img000.png", grown / "shirt" / "img999.png")
    evaluate(run, tmp_path / "allowed", f"data.root={grown}", "data.allow_changed=true")
    catalogue, _ = open_index(tmp_path / "allowed")
    assert catalogue.manifest["data_changed"] is True, "accepted explicitly when it was built"
    out = tmp_path / "eval"
    evaluate(run, out)
    _, predictor = open_index(out)
    assert predictor.checkpoint.data_identity["fingerprint"] == trained_fingerprint(run)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["data_fingerprint"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError, match="fingerprint"):
        open_index(out)


def test_fashion_mnist_identity_uses_source_indices(fmnist_dir, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_config("train", tiny_overrides(fmnist_dir, tmp_path))
    datamodule = instantiate(cfg.data, _recursive_=False)
    datamodule.setup()
    identity = datamodule.data_identity()
    val, test = identity["splits"]["val"]["items"], identity["splits"]["test"]["items"]
    assert len(val) == 40 and all(isinstance(i, int) for i in val)
    assert set(val) <= set(range(160)), "val items are indices into the official train file"
    assert test == list(range(80))
    assert identity["fingerprint"] == datamodule.fingerprint()
    state = datamodule.state_dict()
    assert state["data_identity"] == identity
    other = instantiate(cfg.data, _recursive_=False)
    other.load_state_dict(state)
    assert other.recorded_identity == identity
    assert datamodule.splits["val"].item_info(0)["id"] == val[0]


@pytest.mark.slow
def test_flat_model_predict_and_wardrobe_name_the_task(folder_run, tmp_path, capsys):
    """A model without a task hierarchy (image_folder's one task `label`): predict has no empty
    full_label column, and the wardrobe table is headed by the task's name."""
    from fashionlab.cli import main

    data, run = folder_run
    ckpt = str(run / "checkpoints" / "best.ckpt")
    assert main(["predict", str(data), "--ckpt", ckpt, "-o", str(tmp_path / "p.csv"), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["path", "error", "label", "label_prob"]
    capsys.readouterr()
    assert main(["predict", str(data), "--ckpt", ckpt, "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.split("\t")[1].startswith("label="), line
    assert main(["wardrobe", str(data), "--ckpt", ckpt, "--quiet"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "count" in line)
    assert header.split() == ["label", "count", "share"], out
