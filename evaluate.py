"""Evaluate a trained checkpoint as a classifier and as an embedding for visual search:
`python evaluate.py ckpt_path=outputs/.../checkpoints/best.ckpt [index=hnsw] [key=value ...]`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fashionlab.evaluation.run import evaluate

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
