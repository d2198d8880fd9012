"""notebooks/*.ipynb are stored without outputs and run top to bottom against a tiny run, from
their own folder (as Jupyter starts them) without PROJECT_ROOT, one through the documented
`jupyter nbconvert --execute` of the dev extras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"


def notebook_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a user's kernel: `env` added, no PROJECT_ROOT (the notebook finds the project)."""
    return {**{k: v for k, v in os.environ.items() if k != "PROJECT_ROOT"}, **env}


def execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    """Run a notebook in-process with nbclient, its kernel in notebooks/ (Jupyter's working folder)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in [*env, "PROJECT_ROOT"]}
    os.environ.pop("PROJECT_ROOT", None)
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


@pytest.mark.parametrize("name", ["results.ipynb", "data_exploration.ipynb"])
def test_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs"


def images(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for out in cell.outputs)


@pytest.mark.slow
def test_results_notebook_runs(tiny_eval_dir: Path):
    notebook = execute("results.ipynb", {"FASHIONLAB_EVAL_DIR": str(tiny_eval_dir)})
    text = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
    assert str(tiny_eval_dir) in text
    assert images(notebook) >= 4  # confusion matrices, per-class F1, projection, retrieval examples


def test_nbconvert_is_in_the_dev_extras():
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(d.startswith("nbconvert") for d in dev), "docs/evaluation.md runs notebooks with nbconvert"


@pytest.mark.slow
def test_data_exploration_notebook_runs(fmnist_dir: Path, tmp_path: Path):
    """As docs/evaluation.md says: `jupyter nbconvert --to notebook --execute` (a real process)."""
    overrides = ";".join([f"data.root={fmnist_dir}", "data.system_dirs=[]", "data.download=false",
                          "data.val_size=40"])
    env = notebook_env({"FASHIONLAB_DATA_OVERRIDES": overrides, "FASHIONLAB_DATASETS": "fashion_mnist"})
    result = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute",
                             "--output-dir", str(tmp_path), "data_exploration.ipynb"],
                            cwd=NOTEBOOKS, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    notebook = nbformat.read(tmp_path / "data_exploration.ipynb", as_version=4)
    assert images(notebook) >= 3  # two tasks' class balance, one sample grid
