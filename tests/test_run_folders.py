"""Run and evaluation folders are unique (`<date>_<time>_<6 hex>`), and a folder that already
holds a run is refused unless the run resumes into it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from fixtures_runs import compose_config

from fashionlab.errors import ConfigError
from fashionlab.evaluation.run import eval_dir_for
from fashionlab.training.run import train

from conftest import fork_start, run_entry, tiny_overrides

STAMP = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}")


@pytest.mark.slow
def test_two_runs_started_together_get_two_folders(fmnist_dir, tmp_path):
    logs = tmp_path / "logs"
    args = [o for o in tiny_overrides(fmnist_dir, tmp_path) if not o.startswith("hydra.")]
    args += ["trainer.fast_dev_run=true", "backbone.pretrained=false", f"paths.log_dir={logs}"]
    jobs = [fork_start("train.py", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True) for _ in range(2)]
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]
    runs = sorted((logs / "train" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert STAMP.fullmatch(run.name), run.name
        assert "val/article/acc" in json.loads((run / "metrics.json").read_text())
        assert (run / ".hydra" / "config.yaml").is_file()


def test_folder_names_are_unique_and_stable_within_a_process(tmp_path):
    cfg = compose_config("train", [f"paths.log_dir={tmp_path}"])
    run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.parent == tmp_path / "train" / "runs" and STAMP.fullmatch(run_dir.name)
    assert Path(cfg.hydra.run.dir) == run_dir, "evaluated twice, the same folder"
    sweep_dir = Path(cfg.hydra.sweep.dir)
    assert sweep_dir.parent == tmp_path / "train" / "multiruns" and STAMP.fullmatch(sweep_dir.name)


@pytest.mark.slow
def test_evaluation_folders_are_unique(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "best.ckpt"
    folder = Path(eval_dir_for(str(ckpt), str(tmp_path)))
    assert folder.parent == tiny_run / "eval" and STAMP.fullmatch(folder.name)
    cfg = compose_config("evaluate", [f"ckpt_path={ckpt}"])
    assert Path(cfg.hydra.run.dir).parent == tiny_run / "eval"
    assert STAMP.fullmatch(Path(cfg.hydra.run.dir).name)
    other = Path(eval_dir_for(str(tmp_path / "missing.ckpt"), str(tmp_path)))
    assert other.parent == tmp_path / "evaluate" / "runs" and STAMP.fullmatch(other.name)


def test_a_folder_holding_a_run_is_refused(compose_cfg, fmnist_dir, tmp_path):
    out = tmp_path / "used"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds"):
        train(compose_cfg(tiny_overrides(fmnist_dir, out)))
    assert (out / "metrics.json").read_text() == "{}"


@pytest.mark.slow
def test_cli_refuses_an_explicit_non_empty_run_dir(fmnist_dir, tmp_path):
    out = tmp_path / "used"
    (out / ".hydra").mkdir(parents=True)
    (out / ".hydra" / "config.yaml").write_text("original: true\n")
    (out / "metrics.json").write_text("{}")
    result = run_entry("train.py", *tiny_overrides(fmnist_dir, out))
    assert result.returncode != 0
    assert "already holds" in result.stderr
    assert (out / ".hydra" / "config.yaml").read_text() == "original: true\n"
    assert (out / "metrics.json").read_text() == "{}"
    assert not (out / "checkpoints").exists()


@pytest.mark.slow
def test_an_evaluation_folder_holding_files_is_refused(tiny_run, tmp_path):
    from fashionlab.evaluation.run import evaluate

    used = tmp_path / "eval"
    used.mkdir()
    (used / "report.json").write_text("{}")
    cfg = compose_config("evaluate", [f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}",
                                      f"hydra.run.dir={used}"])
    with pytest.raises(ConfigError, match=r"evaluation folder .* already holds"):
        evaluate(cfg)
    assert (used / "report.json").read_text() == "{}"
