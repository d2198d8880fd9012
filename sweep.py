"""Optuna sweep over train.py's config:
`python sweep.py [search_space=...] [sweep.key=value ...] [train overrides for every trial ...]`.

A user error (unknown search space, bad value, bad train override) prints one line `error: ...`
and exits 2."""

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, open_dict

from fashionlab.entrypoint import hydra_entry, report_errors
from fashionlab.errors import FashionlabError
from fashionlab.sweep.argv import hide_storage_password, split_argv

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

# The train overrides of the command line (set below, before Hydra parses the rest).
TRAIN_OVERRIDES: list[str] = []
# `sweep.storage` of the command line when it holds a password (Hydra sees it as `***`: it saves
# the command line in the sweep folder).
STORAGE_URL: str | None = None


@hydra_entry(config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    """Returns the study's best value."""
    from fashionlab.sweep.run import run_sweep  # after Hydra's logging set-up, as in train.py

    with open_dict(cfg):
        cfg.sweep.train_overrides = list(TRAIN_OVERRIDES)
        if STORAGE_URL:
            cfg.sweep.storage = STORAGE_URL
    return run_sweep(cfg)["best_value"]


if __name__ == "__main__":
    try:
        sweep_args, TRAIN_OVERRIDES = split_argv(sys.argv[1:])
        sweep_args, STORAGE_URL = hide_storage_password(sweep_args)
    except FashionlabError as err:
        report_errors([str(err)])
    sys.argv = [sys.argv[0], *sweep_args]
    main()
