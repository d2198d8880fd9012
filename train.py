"""Train a multi-task fashion classifier: `python train.py [group=option] [key=value ...]`.

A user error (unknown name, missing data, bad value) prints one line `error: ...` and exits 2."""

import os
from pathlib import Path

from omegaconf import DictConfig

from fashionlab.entrypoint import hydra_entry
from fashionlab.preflight import check_train_paths

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


# check_train_paths: a missing data.root or checkpoint is reported before torch loads
@hydra_entry(config_name="train", preflight=check_train_paths)
def main(cfg: DictConfig) -> float | None:
    """Returns the monitored metric, so Hydra sweepers can optimise it."""
    # Imported here: config errors are reported before torch loads, and Lightning's loggers
    # join Hydra's logging (console and the run's log file) instead of adding their own.
    from fashionlab.training.run import train

    return train(cfg).get(cfg.training.monitor)


if __name__ == "__main__":
    main()
