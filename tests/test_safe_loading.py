"""Loading a checkpoint or an evaluation folder never runs code the file names: every `_target_`
read from a file is checked against an allow-list before anything is built, and checkpoints
must be local files (URLs are refused, never fetched)."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fixtures_runs import compose_config
from PIL import Image

from fashionlab.cli import main
from fashionlab.config_safety import check_targets, safe_instantiate
from fashionlab.errors import CheckpointError, FashionlabError, UnsafeConfigError
from fashionlab.inference.checkpoint import load_checkpoint

from conftest import CONF, run_entry, run_script, tiny_overrides


def poison(node: Any, made: Path, key: str = "") -> Any:
    """A copy of `node` where every mapping holding a `_target_` becomes
    `os.makedirs(made/<dotted key>)`."""
    if isinstance(node, dict):
        if "_target_" in node:
            return {"_target_": "os.makedirs", "name": str(made / (key or "root")), "exist_ok": True}
        return {k: poison(v, made, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [poison(v, made, f"{key}[{i}]") for i, v in enumerate(node)]
    return node


def makedirs_at(made: Path, name: str) -> dict[str, Any]:
    return {"_target_": "os.makedirs", "name": str(made / name), "exist_ok": True}


def write_hostile_checkpoint(source: Path, out: Path, edit) -> Path:
    """Re-save `source` after `edit(checkpoint_dict)` as out/checkpoints/best.ckpt."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    edit(checkpoint)
    path = out / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def made(tmp_path) -> Path:
    """Where hostile targets would create folders; it must never exist."""
    return tmp_path / "made"


@pytest.fixture
def hostile_ckpt(tiny_run, tmp_path, made) -> Path:
    """The tiny run's checkpoint with every `_target_` of its config replaced by os.makedirs."""

    def edit(checkpoint):
        checkpoint["hyper_parameters"]["config"] = poison(checkpoint["hyper_parameters"]["config"], made)

    return write_hostile_checkpoint(tiny_run / "checkpoints" / "best.ckpt", tmp_path / "hostile", edit)


@pytest.fixture
def hostile_eval_dir(tiny_eval_dir, tmp_path, made) -> Path:
    """A copy of the tiny evaluation folder whose manifest's `data` is os.makedirs."""
    folder = shutil.copytree(tiny_eval_dir, tmp_path / "hostile-eval")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["data"] = poison(manifest["data"], made, "data")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def query_png(tmp_path) -> Path:
    path = tmp_path / "query.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(path)
    return path


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, key: str, made: Path) -> None:
    assert not made.exists(), f"loading ran os.makedirs: {sorted(made.rglob('*'))}"
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert key in err and "os.makedirs" in err, err


@pytest.mark.parametrize("command", ["predict", "wardrobe"])
@pytest.mark.slow
def test_cli_refuses_hostile_checkpoint(command, hostile_ckpt, query_png, made, capsys):
    code, err = cli(capsys, command, query_png.parent, "--ckpt", hostile_ckpt, "--quiet")
    assert_refused(code, err, "optimizer._target_", made)


@pytest.mark.parametrize("command", ["similar", "profile"])
@pytest.mark.slow
def test_cli_refuses_hostile_checkpoint_with_index(command, hostile_ckpt, tiny_eval_dir, query_png, made,
                                                   capsys, tmp_path):
    code, err = cli(capsys, command, query_png, "--index", tiny_eval_dir, "--ckpt", hostile_ckpt,
                    "-k", 3, "-o", tmp_path / "grid.png")
    assert_refused(code, err, "optimizer._target_", made)


@pytest.mark.parametrize("command", ["similar", "profile"])
@pytest.mark.slow
def test_cli_refuses_hostile_evaluation_folder(command, hostile_eval_dir, query_png, made, capsys,
                                               tmp_path):
    args = ["--random"] if command == "similar" else [query_png]
    code, err = cli(capsys, command, *args, "--index", hostile_eval_dir, "-k", 3, "-o", tmp_path / "g.png")
    assert_refused(code, err, "data._target_", made)


@pytest.mark.slow
def test_console_script_refuses_hostile_checkpoint(hostile_ckpt, query_png, made):
    """A real process: exit status 2, one line on stderr naming the key."""
    result = run_script("-m", "fashionlab", "predict", str(query_png.parent), "--ckpt", str(hostile_ckpt),
                        "--quiet", timeout=300)
    assert_refused(result.returncode, result.stderr, "optimizer._target_", made)


@pytest.mark.slow
def test_app_loader_refuses_hostile_files(hostile_ckpt, hostile_eval_dir, tiny_eval_dir, made):
    from fashionlab.recommend.catalogue_io import open_index

    with pytest.raises(UnsafeConfigError, match=r"optimizer\._target_"):
        open_index(tiny_eval_dir, hostile_ckpt)
    with pytest.raises(UnsafeConfigError, match=r"data\._target_.*os\.makedirs"):
        catalogue, _ = open_index(hostile_eval_dir)
        catalogue.image(0)  # the old code built manifest.json's data here
    assert not made.exists()


@pytest.mark.slow
def test_evaluate_refuses_hostile_checkpoint(hostile_ckpt, tmp_path, made):
    from fashionlab.evaluation.run import evaluate

    cfg = compose_config("evaluate", [f"ckpt_path={hostile_ckpt}", f"hydra.run.dir={tmp_path / 'out'}",
                                      "progress=false", "wandb.log=false"])
    with pytest.raises(UnsafeConfigError, match=r"optimizer\._target_ *= *'os\.makedirs'") as info:
        evaluate(cfg)
    assert "data._target_" in str(info.value) and str(hostile_ckpt) in str(info.value)
    assert not made.exists()


@pytest.mark.slow
def test_evaluate_script_refuses_hostile_checkpoint(hostile_ckpt, tmp_path, made):
    result = run_entry("evaluate.py", f"ckpt_path={hostile_ckpt}", f"hydra.run.dir={tmp_path / 'out'}",
                       "progress=false", "wandb.log=false")
    assert result.returncode != 0
    assert "optimizer._target_" in result.stderr, result.stderr[-2000:]
    assert not made.exists()


@pytest.mark.slow
def test_weights_that_fail_to_load_run_nothing_either(tiny_run, tmp_path, made):
    """The issue's example: only optimizer._target_ is os.makedirs and the weights do not fit."""

    def edit(checkpoint):
        checkpoint["hyper_parameters"]["config"]["optimizer"] = makedirs_at(made, "optimizer")
        checkpoint["state_dict"] = {}

    path = write_hostile_checkpoint(tiny_run / "checkpoints" / "best.ckpt", tmp_path / "run", edit)
    with pytest.raises(UnsafeConfigError, match=r"hyper_parameters\.config\.optimizer\._target_"):
        load_checkpoint(path)
    assert not made.exists()


@pytest.mark.slow
def test_nested_transform_in_checkpoint_is_found(tiny_run, tmp_path, made):
    def edit(checkpoint):
        # the train pipeline: the eval one is built from the preprocessing record, not the config
        checkpoint["hyper_parameters"]["config"]["data"]["transforms"]["train"]["transforms"][0] = (
            makedirs_at(made, "t"))

    path = write_hostile_checkpoint(tiny_run / "checkpoints" / "best.ckpt", tmp_path / "run", edit)
    with pytest.raises(UnsafeConfigError, match=r"data\.transforms\.train\.transforms\[0\]\._target_"):
        load_checkpoint(path)
    assert not made.exists()


@pytest.mark.slow
def test_nested_transform_in_manifest_is_found(tiny_eval_dir, tmp_path, made):
    from fashionlab.retrieval.catalogue import Catalogue

    folder = shutil.copytree(tiny_eval_dir, tmp_path / "eval")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["data"]["transforms"]["train"]["transforms"][0] = makedirs_at(made, "t")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafeConfigError, match=r"manifest\.json.*data\.transforms\.train\.transforms\[0\]"):
        Catalogue.load(folder).image(0)
    assert not made.exists()


# ---- the checker itself -------------------------------------------------------------------------


@pytest.mark.slow
def test_project_configs_pass(tiny_run):
    """The configs the project offers (every optimizer, scheduler, logger, callbacks and data
    option, as a checkpoint stores them) are all allowed."""
    from fashionlab.training.run import resolved_config

    checkpoint = torch.load(tiny_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    check_targets(checkpoint["hyper_parameters"]["config"], "tiny run")
    groups = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
              for g in ("optimizer", "scheduler", "logger", "callbacks", "trainer", "data", "experiment")}
    for group, options in groups.items():
        for option in options:
            cfg = compose_config("train", ["hydra.run.dir=/nowhere", f"{group}={option}"])
            check_targets(resolved_config(cfg), f"{group}={option}")


@pytest.mark.parametrize("target", [
    "os.makedirs",
    "builtins.eval",
    "pathlib.Path.mkdir",
    "torch.save",
    "torch.optim.sgd.torch.save",               # an allowed prefix, reached through a module import
    "albumentations.core.serialization.save",   # a function, not a transform
    "fashionlab.training.schedulers.math.exp",  # imported into the schedulers module
    "fashionlab.training.run.train",            # project code, but not something loading builds
    "fashionlab.data.readers.download.download_file",
    "lightning.pytorch.callbacks.os.makedirs",
    "fashionlab.nope.Missing",
])
def test_targets_off_the_allow_list_are_refused(target):
    cfg = {"optimizer": {"_target_": target, "_partial_": True}, "data": {"x": [1, {"y": 2}]}}
    with pytest.raises(UnsafeConfigError, match=rf"where: optimizer\._target_ *= *'{target}'"):
        check_targets(cfg, "where")


def test_other_modules_are_not_even_imported(tmp_path, monkeypatch):
    (tmp_path / "planted_module.py").write_text(
        f"import os\nos.makedirs({str(tmp_path / 'imported')!r})\nclass X: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnsafeConfigError, match=r"a\[0\]\.b\._target_"):
        check_targets({"a": [{"b": {"_target_": "planted_module.X"}}]}, "f")
    assert "planted_module" not in sys.modules and not (tmp_path / "imported").exists()


def test_bad_target_values_are_refused():
    for value in (5, None, ["os.makedirs"], "", "fashionlab..x"):
        with pytest.raises(UnsafeConfigError, match=r"k\._target_"):
            check_targets({"k": {"_target_": value}}, "f")


def test_interpolations_cannot_smuggle_targets(tmp_path, made):
    decoded = "${oc.decode:'{_target_: os.makedirs, name: " + str(made) + "}'}"
    with pytest.raises(UnsafeConfigError, match=r"optimizer\._target_ *= *'os\.makedirs'"):
        check_targets({"optimizer": decoded}, "f")
    # an escaped interpolation would come back to life when the checked values are used again
    with pytest.raises(UnsafeConfigError, match=r"optimizer.*interpolation"):
        check_targets({"optimizer": "\\" + decoded}, "f")
    assert not made.exists()


def test_safe_instantiate_builds_allowed_and_refuses_the_rest(made):
    compose = {"_target_": "albumentations.Compose",
               "transforms": [{"_target_": "albumentations.Resize", "height": 8, "width": 8}]}
    assert callable(safe_instantiate(compose, "t"))
    optimizer = safe_instantiate({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}, "o")
    assert isinstance(optimizer([torch.nn.Parameter(torch.zeros(1))]), torch.optim.SGD)
    hostile = copy.deepcopy(compose)
    hostile["transforms"].append(makedirs_at(made, "x"))
    with pytest.raises(UnsafeConfigError, match=r"transforms\[1\]\._target_"):
        safe_instantiate(hostile, "t")
    assert not made.exists()


# ---- checkpoints are local files ----------------------------------------------------------------

URLS = ["https://example.com/best.ckpt", "http://example.com/best.ckpt", "s3://bucket/run/best.ckpt",
        "file:///tmp/best.ckpt", "hf://org/model/best.ckpt"]


@pytest.mark.parametrize("url", URLS)
def test_checkpoint_urls_are_refused(url, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a URL was fetched")

    monkeypatch.setattr(torch, "load", no_network)
    with pytest.raises(CheckpointError, match=r"local file") as info:
        load_checkpoint(url)
    assert url in str(info.value)


def test_cli_and_evaluate_refuse_checkpoint_urls(tmp_path, capsys):
    from fashionlab.evaluation.run import evaluate

    code, err = cli(capsys, "predict", tmp_path, "--ckpt", URLS[0])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "local file" in err and URLS[0] in err
    cfg = compose_config("evaluate", [f"ckpt_path={URLS[2]}", f"hydra.run.dir={tmp_path / 'out'}"])
    with pytest.raises(CheckpointError, match="local file"):
        evaluate(cfg)


def test_train_refuses_a_resume_url(fmnist_dir, tmp_path):
    from fashionlab.training.run import train

    run_dir = tmp_path / "run"
    cfg = compose_config("train", [*tiny_overrides(fmnist_dir, run_dir), f"ckpt_path={URLS[0]}"])
    with pytest.raises(CheckpointError, match=r"ckpt_path.*local file"):
        train(cfg)
    assert not run_dir.exists()
    for value in ("registry", "registry:org/model"):
        cfg = compose_config("train", [*tiny_overrides(fmnist_dir, run_dir), f"ckpt_path={value}"])
        with pytest.raises(FashionlabError, match="ckpt_path"):
            train(cfg)


@pytest.mark.slow
def test_resume_refuses_hostile_checkpoint(hostile_ckpt, made):
    """train.py ckpt_path=... resumes with the checkpoint's own config: it is checked first."""
    proc = run_entry("train.py", f"ckpt_path={hostile_ckpt}", "logger=none")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "optimizer._target_" in proc.stderr and "os.makedirs" in proc.stderr
    assert not made.exists()


def test_a_config_naming_a_reader_by_its_old_module_loads_as_the_moved_one():
    """Checkpoints written before the readers moved to fashionlab.data.readers still load."""
    from fashionlab.config_safety import DATA, check_targets

    old = {"_target_": "fashionlab.data.fashion_mnist.FashionMNISTDataModule",
           "nested": [{"_target_": "fashionlab.data.image_folder.ImageFolderDataModule"}]}
    plain = check_targets(old, "old.ckpt", DATA)
    assert plain["_target_"] == "fashionlab.data.readers.fashion_mnist.FashionMNISTDataModule"
    assert plain["nested"][0]["_target_"] == \
        "fashionlab.data.readers.image_folder.ImageFolderDataModule"
