"""Optuna sweep over train.py's config: `python sweep.py [search_space=...] [sweep.key=value ...]`.

A user error (unknown search space, bad value) prints one line `error: ...` and exits 2."""

import os
from pathlib import Path

from omegaconf import DictConfig

from fashionlab.entrypoint import hydra_entry

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra_entry(config_name="sweep")
def main(cfg: DictConfig) -> float | None:
    """Returns the study's best value."""
    from fashionlab.sweep.run import run_sweep  # after Hydra's logging set-up, as in train.py

    return run_sweep(cfg)["best_value"]


if __name__ == "__main__":
    main()
