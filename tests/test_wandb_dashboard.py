"""What the W&B dashboard holds, read from the offline run files: the training run's dataset and
model artifacts, best-epoch summary and misclassified-images tables; the evaluation run's use of
the model artifact, its evaluation artifact (a folder that loads as a catalogue), retrieval
examples and projection tables; a sweep's trial runs with their states and its summary run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import open_dict
from optuna.trial import TrialState
from test_sweep import sweep_cfg  # noqa: F401  (the fixture)
from wandb_records import artifacts, history_and_summary, logged_table, named_files, run_settings

from fashionlab.errors import ManifestMismatchError
from fashionlab.retrieval.catalogue import Catalogue
from fashionlab.sweep.run import run_sweep

pytestmark = pytest.mark.slow


def run_file(folder: Path) -> Path:
    """The one offline run file under `folder/wandb`."""
    runs = list((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return next(runs[0].glob("run-*.wandb"))


def test_training_run_artifacts_summary_and_misclassified_images(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    path = run_file(tiny_run)
    run_id = run_settings(path)["id"]

    models = artifacts(path, "model")
    assert len(models) == 1  # best.ckpt only (log_last=false)
    model = models[0]
    assert model["name"] == f"model-{run_id}" and set(model["aliases"]) == {"best", "latest"}
    assert model["files"] == {"model.ckpt": str(tiny_run / "checkpoints" / "best.ckpt")}
    meta = model["metadata"]
    assert meta["monitor"] == "val/article/acc" and meta["mode"] == "max"
    assert meta["score"] == pytest.approx(metrics["val/article/acc"])
    assert meta["data_fingerprint"] == metrics["data_fingerprint"]
    assert meta["git_commit"] == metrics["git_commit"]
    (dataset,) = artifacts(path, "dataset")
    assert dataset["use_after_commit"] and dataset["metadata"]["fingerprint"] == metrics["data_fingerprint"]
    identity = json.loads((tiny_run / "data_identity.json").read_text())
    assert identity["fingerprint"] == metrics["data_fingerprint"]
    stored = torch.load(tiny_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert stored["wandb"]["run_id"] == run_id and stored["wandb"]["model_artifact"] == model["name"]

    # Summary: the monitor's best epoch (define_metric max), the other numbers of the tested checkpoint.
    history, summary = history_and_summary(path)
    epochs = [row["val/article/acc"] for row in history if "val/article/acc" in row][:-1]  # fit's epochs
    assert len(epochs) == 2
    best = max(epochs)
    assert summary["val/article/acc"] == {"max": pytest.approx(best)}
    assert summary["best_epoch"] == epochs.index(best) and summary["best_score"] == pytest.approx(best)
    assert summary["val/article/f1_macro"] == pytest.approx(metrics["val/article/f1_macro"])
    assert summary["test/article/acc"] == pytest.approx(metrics["test/article/acc"])
    assert summary["model_artifact"] == f"model-{run_id}:best"

    # Misclassified images: at most logger.log_images=4 rows per task (the run makes more mistakes).
    for task in ("article", "category"):
        assert metrics[f"val/{task}/acc"] < 0.9
        assert summary[f"val/{task}/misclassified/nrows"] == 4
        table = logged_table(path, summary, f"val/{task}/misclassified")
        assert table["columns"] == ["image", "index", "true", "predicted", "confidence"]
        assert all(row[2] != row[3] and 0 < row[4] <= 1 for row in table["data"])


def test_evaluation_run_uses_the_model_and_logs_the_folder(tiny_run, tiny_eval_dir, tmp_path):
    train_file, eval_file = run_file(tiny_run), run_file(tiny_eval_dir)
    (model,) = artifacts(train_file, "model")
    (used,) = artifacts(eval_file, "model")
    # Same name and content as the training run's: wandb sync resolves it to that version.
    assert used["use_after_commit"] and (used["name"], used["digest"]) == (model["name"], model["digest"])
    assert run_settings(eval_file)["group"] == run_settings(train_file)["group"]
    assert run_settings(eval_file)["job_type"] == "evaluate"

    (evaluation,) = artifacts(eval_file, "evaluation")
    assert not evaluation["use_after_commit"]
    report = json.loads((tiny_eval_dir / "report.json").read_text())
    assert evaluation["metadata"]["checkpoint_sha256"] == report["checkpoint_sha256"]
    assert {"report.json", "report.md", "manifest.json", "index.faiss", "embeddings.npy",
            "gallery.parquet", "retrieval_examples.png"} <= set(evaluation["files"])
    assert not any(name.startswith((".hydra", "wandb")) for name in evaluation["files"])
    # The artifact's files, as `artifact.download()` lays them out, load as a catalogue, with its checks.
    download = tmp_path / "download"
    download.mkdir()
    for name, local in evaluation["files"].items():
        shutil.copy(local, download / name)
    catalogue = Catalogue.load(download, checkpoint_sha256=report["checkpoint_sha256"])
    assert len(catalogue) == report["num_gallery"]
    with pytest.raises(ManifestMismatchError):
        Catalogue.load(download, checkpoint_sha256="0" * 64)

    _, summary = history_and_summary(eval_file)
    examples = logged_table(eval_file, summary, "eval/retrieval/examples")
    assert examples["columns"] == ["query", "label", "hits", *[f"top_{i}" for i in range(1, 9)]]
    assert len(examples["data"]) == 8  # examples.num_queries
    projection = logged_table(eval_file, summary, "eval/embeddings/projection")
    dims = report["embedding_dim"]
    assert projection["columns"] == ["id", "image", "article", "category", *[f"emb_{d}" for d in range(dims)]]
    assert len(projection["data"]) == min(512, report["num_gallery"])
    assert all(isinstance(v, float) for v in projection["data"][0][4:])


def test_evaluation_is_named_and_grouped_with_its_training_run(tiny_run, tiny_eval_dir):
    training, evaluation = run_settings(run_file(tiny_run)), run_settings(run_file(tiny_eval_dir))
    assert (training["name"], training["group"]) == (tiny_run.name, tiny_run.name)
    assert evaluation["group"] == training["group"]
    assert evaluation["name"] == f"{tiny_run.name}-eval-{tiny_eval_dir.name}"


def test_copied_run_folder_holds_every_file_wandb_sync_needs(tiny_run, tiny_eval_dir, tmp_path,
                                                              monkeypatch):
    """The run folder (with its evaluation) copied elsewhere, as to another machine with a fresh
    HOME: every file the offline records name lies inside the folder, and the copy has it."""
    copy = shutil.copytree(tiny_run, tmp_path / "elsewhere" / tiny_run.name, symlinks=True)
    monkeypatch.setenv("HOME", str(tmp_path / "fresh-home"))
    run_files = sorted(copy.glob("**/wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 2  # the training run and its evaluation
    named = [name for path in run_files for name in named_files(path)]
    assert sum(name.endswith(".ckpt") for name in named) >= 2  # model logged, and used by the evaluation
    assert len(named) > 50  # tables and their images: the misclassified, examples and projection tables
    outside = [name for name in named if not Path(name).is_relative_to(tiny_run)]
    assert not outside, f"{len(outside)} files outside the run folder, e.g. {outside[:3]}"
    missing = [name for name in named if not (copy / Path(name).relative_to(tiny_run)).is_file()]
    assert not missing, missing[:5]


def test_sweep_trials_and_summary_are_wandb_runs(sweep_cfg, tmp_path):  # noqa: F811
    space = {"optimizer.lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
             "optimizer.weight_decay": {"type": "float", "low": 0.0, "high": 0.1}}
    cfg = sweep_cfg(space, "sweep.n_trials=3", "sweep.resume=true", "sweep.study_name=wb",
                    "sweep.pruner=median", "sweep.pruner_args={n_startup_trials: 1, n_warmup_steps: 0}",
                    backbone=None)  # Lite0 learns within the one epoch that pruning compares
    with open_dict(cfg):
        cfg.sweep.train_overrides = [o.replace("logger=none", "logger=wandb")
                                     for o in cfg.sweep.train_overrides]
    sweep_dir = Path(cfg.paths.output_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{sweep_dir / 'study.db'}"
    study = optuna.create_study(study_name="wb", direction="maximize", storage=storage)
    # A learning rate that learns; a weight decay AdamW refuses (the trial fails after its W&B run
    # started); a learning rate that does not learn (pruned: below the first trial after one epoch).
    queued = ({"optimizer.lr": 3e-3, "optimizer.weight_decay": 0.0},
              {"optimizer.lr": 3e-3, "optimizer.weight_decay": -1.0},
              {"optimizer.lr": 1e-7, "optimizer.weight_decay": 0.0})
    for params in queued:
        study.enqueue_trial(params, skip_if_exists=False)
    run_sweep(cfg)
    states = [t.state for t in optuna.load_study(study_name="wb", storage=storage).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]

    for number, tag in enumerate(("complete", "failed", "pruned")):
        path = run_file(sweep_dir / "trials" / f"{number:04d}")
        settings = run_settings(path)
        assert settings["group"] == "wb" and settings["name"] == f"wb-trial-{number}"
        assert tag in settings["tags"]
        assert settings["config"]["optuna"]["params"] == queued[number]
    summary_file = run_file(sweep_dir)
    settings = run_settings(summary_file)
    assert settings["group"] == "wb" and settings["job_type"] == "sweep-summary"
    _, summary = history_and_summary(summary_file)
    assert summary["sweep/trials/nrows"] == 3
    assert "sweep/optimization_history_table/nrows" in summary
    assert (summary["trials_complete"], summary["trials_fail"], summary["trials_pruned"]) == (1, 1, 1)
    (best,) = artifacts(summary_file, "sweep-best")
    assert best["files"] == {"best.yaml": str(sweep_dir / "best.yaml")} and best["metadata"]["trial"] == 0
