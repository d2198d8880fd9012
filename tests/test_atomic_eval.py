"""evaluate.py builds its folder under a temporary sibling name and renames it at the end, so an
evaluation that fails (or is killed) part-way never leaves a folder that looks complete."""

from __future__ import annotations

import json

import pytest
from fixtures_runs import evaluate_run

FAST = ("examples.num_queries=2", "examples.k=2", "wandb.log=false")
RESULT_FILES = {"embeddings.npy", "gallery.parquet", "index.faiss", "manifest.json", "report.json"}


class Boom(RuntimeError):
    pass


@pytest.mark.slow
def test_failing_evaluation_leaves_no_final_folder(tiny_run, tmp_path, monkeypatch):
    """A step after the first files are written (the confusion figures) raises."""
    import fashionlab.evaluation.run as evaluation

    def boom(*args, **kwargs):
        raise Boom("figure failed")

    monkeypatch.setattr(evaluation, "plot_confusion", boom)
    out = tmp_path / "eval" / "broken"
    with pytest.raises(Boom):
        evaluate_run(tiny_run, out, FAST)
    left = {p.name for p in out.iterdir()} if out.exists() else set()
    assert not left & RESULT_FILES, f"a failed evaluation left {sorted(left & RESULT_FILES)} in {out}"
    assert sorted(p.name for p in out.parent.iterdir() if p != out) == []  # no partial folder kept


@pytest.mark.slow
def test_evaluation_folder_appears_whole(tiny_run, tmp_path):
    out = tmp_path / "eval" / "whole"
    evaluate_run(tiny_run, out, FAST)
    assert {p.name for p in out.iterdir()} >= RESULT_FILES
    assert [p.name for p in out.parent.iterdir()] == ["whole"]
    report = json.loads((out / "report.json").read_text())
    assert report["eval_dir"] == str(out)
