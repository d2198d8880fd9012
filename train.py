"""Train a multi-task fashion classifier: `python train.py [group=option] [key=value ...]`.

A user error (unknown name, missing data, bad value) prints one line `error: ...` and exits 2."""

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from fashionlab.entrypoint import error_message, hydra_entry, report_errors
from fashionlab.errors import FashionlabError
from fashionlab.experiment_file import resolve_experiment_path
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
    try:  # experiment=<path>.yaml: an experiment file where it lies (e.g. a sweep's best.yaml)
        sys.argv[1:] = resolve_experiment_path(sys.argv[1:])
    except FashionlabError as err:
        report_errors([error_message(err)])
    main()
