"""Optuna sweep over train.py's config: `python sweep.py [search_space=...] [sweep.key=value ...]`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fashionlab.sweep.run import run_sweep

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    """Returns the study's best value."""
    return run_sweep(cfg)["best_value"]


if __name__ == "__main__":
    main()
