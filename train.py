"""Train a multi-task fashion classifier: `python train.py [group=option] [key=value ...]`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fashionlab.training.run import train

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the monitored metric, so Hydra sweepers can optimise it."""
    return train(cfg).get(cfg.training.monitor)


if __name__ == "__main__":
    main()
