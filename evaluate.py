"""Evaluate a trained checkpoint as a classifier and as an embedding for visual search:
`python evaluate.py ckpt_path=outputs/.../checkpoints/best.ckpt [index=hnsw] [key=value ...]`.

A user error (missing checkpoint, bad value) prints one line `error: ...` and exits 2."""

import os
from pathlib import Path

from omegaconf import DictConfig

from fashionlab.entrypoint import hydra_entry
from fashionlab.evaluation.run import evaluate  # also registers the run-dir resolver fl_eval_dir

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra_entry(config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
