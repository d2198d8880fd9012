"""notebooks/*.ipynb are stored without outputs and run top to bottom against a tiny run."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()
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


@pytest.mark.slow
def test_data_exploration_notebook_runs(fmnist_dir: Path):
    overrides = ";".join([f"data.root={fmnist_dir}", "data.system_dirs=[]", "data.download=false",
                          "data.val_size=40"])
    notebook = execute("data_exploration.ipynb", {"FASHIONLAB_DATA_OVERRIDES": overrides,
                                                  "FASHIONLAB_DATASETS": "fashion_mnist"})
    assert images(notebook) >= 3  # two tasks' class balance, one sample grid
