"""Optuna sweep over train.py's config:
`python sweep.py [search_space=...] [sweep.key=value ...] [train overrides for every trial ...]`."""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from fashionlab.errors import FashionlabError
from fashionlab.sweep.argv import split_argv
from fashionlab.sweep.run import run_sweep

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

# The train overrides of the command line (set below, before Hydra parses the rest).
TRAIN_OVERRIDES: list[str] = []


@hydra.main(version_base="1.3", config_path="conf", config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    """Returns the study's best value."""
    with open_dict(cfg):
        cfg.sweep.train_overrides = list(TRAIN_OVERRIDES)
    try:
        return run_sweep(cfg)["best_value"]
    except FashionlabError as err:
        fail(err)


def fail(err: Exception) -> None:
    """A user error: one line on stderr, exit status 2."""
    print(f"sweep.py: error: {err}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    try:
        sweep_args, TRAIN_OVERRIDES = split_argv(sys.argv[1:])
    except FashionlabError as err:
        fail(err)
    sys.argv = [sys.argv[0], *sweep_args]
    main()
