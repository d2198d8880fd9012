"""Training and evaluation read through the prepared cache: every train item once per epoch
across 2 DDP processes x 2 loader workers and val/test counted once; exact resume; and the whole
path on full-size JPEGs in the Kaggle layout (fashion_products_resnet50: build, train, resume,
evaluate over the cached gallery, `fashionlab similar` on a new photo)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd
import pytest
from fixtures_images import write_tree
from fixtures_photos import write_kaggle_photos
from test_resume import KILL_ENV, only_run_folder, script_env, stage_metrics, train_script

from conftest import fork_script

TESTS = Path(__file__).resolve().parent
QUIET = ["logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "callbacks.progress_bar=null"]


def small_folder(root: Path) -> Path:
    write_tree(root, {"a": 14, "b": 13, "c": 13}, ext=".jpg")  # 40 images: train 29, val 5, test 6
    return root


def cached_folder_run(root: Path, cache: Path) -> list[str]:
    return ["data=image_folder", f"data.root={root}", f"data.cache.dir={cache}", "data.cache.workers=2",
            "data.val_size=5", "data.test_size=6", "data.image_size=32", "data.batch_size=4",
            "data.eval_batch_size=4", "backbone.pretrained=false", "training.freeze_epochs=0",
            "trainer.num_sanity_val_steps=0"]


def confusion_total(run_dir: Path, stage: str, task: str) -> int:
    table = pd.read_csv(run_dir / "tables" / f"{stage}_{task}_confusion.csv", index_col=0)
    return int(table.to_numpy().sum())


@pytest.mark.slow
def test_ddp_sees_every_train_item_and_counts_val_test_once(tmp_path):
    root, run = small_folder(tmp_path / "images"), tmp_path / "run"
    proc = fork_script(
        str(TESTS / "record_batches.py"),
        *cached_folder_run(root, tmp_path / "cache"), *QUIET, "data.num_workers=2",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1",
        f"hydra.run.dir={run}", env=script_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((run / f"seen-0-{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 15  # ceil(29 / 2): one item repeated, none dropped
    assert set(ranks[0] + ranks[1]) == set(range(29))
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["data_num_train"], metrics["data_num_val"], metrics["data_num_test"]) == (29, 5, 6)
    assert confusion_total(run, "val", "label") == 5
    assert confusion_total(run, "test", "label") == 6


@pytest.mark.slow
def test_cached_run_killed_mid_epoch_2_resumes_to_the_same_metrics(tmp_path):
    root, cache = small_folder(tmp_path / "images"), tmp_path / "cache"
    common = [*cached_folder_run(root, cache), "data.num_workers=2", "trainer.max_epochs=2",
              "backbone.drop_rate=0.3", "optimizer.lr=5e-3", "trainer.enable_progress_bar=false",
              "trainer.enable_model_summary=false"]
    reference = tmp_path / "reference"
    done = train_script(*common, "logger=none", f"hydra.run.dir={reference}")
    assert done.returncode == 0, done.stderr[-3000:]
    logs = tmp_path / "logs"
    killed = train_script(*common, "logger=csv", f"paths.log_dir={logs}", **{KILL_ENV: "11"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = only_run_folder(logs)
    resumed = train_script(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((run / "metrics.json").read_text())
    assert got["global_step"] == expected["global_step"] == 16  # 8 batches of <= 4 an epoch
    assert got["data_cache_key"] == expected["data_cache_key"]
    assert stage_metrics(got) == pytest.approx(stage_metrics(expected), abs=1e-6, rel=0)


@pytest.mark.slow
def test_fashion_products_photos_end_to_end(tmp_path, caplog, capsys):
    """The named experiment, made tiny (24 full-size 1800x2400 JPEGs, ResNet-50 from scratch at
    64 px): build the cache, train an epoch, resume for a second, evaluate over the cached
    gallery, `fashionlab similar` on a new photo."""
    import logging

    from fixtures_runs import compose_config, evaluate_run

    from fashionlab.cli import main
    from fashionlab.training.run import train

    root = write_kaggle_photos(tmp_path / "products", 24, seed=3)
    cache, run = tmp_path / "cache", tmp_path / "run"
    overrides = [
        "experiment=fashion_products_resnet50", f"data.root={root}", f"data.cache.dir={cache}",
        "trainer=cpu", "backbone.pretrained=false", "data.image_size=64", "data.batch_size=8",
        "data.eval_batch_size=16", "data.num_workers=0", "data.val_size=5", "data.test_size=5",
        "data.balance.min_count=2", "training.freeze_epochs=0", "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0", *QUIET, f"hydra.run.dir={run}"]
    cfg = compose_config("train", overrides)
    assert cfg.data.cache.dir == str(cache) and cfg.backbone.name == "resnet50"
    first = train(cfg)
    (key,) = [p.name for p in cache.iterdir() if not p.name.startswith(".")]
    assert first["data_cache_key"] == key and first["epochs_completed"] == 1
    record = json.loads((cache / key / "cache.json").read_text())
    assert record["short_side"] == 96 and sum(record["counts"].values()) == 24
    last = run / "checkpoints" / "last.ckpt"
    resumed = train(compose_config("train", [f"ckpt_path={last}", "trainer.max_epochs=2",
                                             f"hydra.run.dir={run}"]))
    assert resumed["epochs_completed"] == 2 and resumed["data_cache_key"] == key

    with caplog.at_level(logging.INFO, logger="fashionlab.data.cache.prepare"):
        # the checkpoint's data.cache.dir is never followed: the user passes it
        out = evaluate_run(run, tmp_path / "eval", (f"data.cache.dir={cache}", "retrieval.ks=[1]",
                                                    "retrieval.k=3", "retrieval.recall_vs_exact_k=3",
                                                    "examples.k=2", "examples.num_queries=2"))
    assert f"reusing {cache}/{key}" in caplog.text
    report = json.loads((out / "report.json").read_text())
    assert (report["gallery_split"], report["num_gallery"]) == ("train", 14)
    assert "masterCategory" in report["retrieval"]["metrics"]

    new = write_kaggle_photos(tmp_path / "new", 1, seed=99)
    photo = next((new / "images").glob("*.jpg"))
    capsys.readouterr()
    assert main(["similar", str(photo), "--index", str(out), "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert len([line for line in printed.splitlines() if line.strip()[:1].isdigit()]) >= 3
