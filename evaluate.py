"""Evaluate a trained checkpoint as a classifier and as an embedding for visual search:
`python evaluate.py ckpt_path=outputs/.../checkpoints/best.ckpt [index=hnsw] [key=value ...]`.

A user error (missing checkpoint, bad value) prints one line `error: ...` and exits 2."""

import os
from pathlib import Path

from omegaconf import DictConfig

from fashionlab.entrypoint import hydra_entry
from fashionlab.preflight import check_eval_paths

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


# check_eval_paths: a missing checkpoint or data.root is reported before torch loads
@hydra_entry(config_name="evaluate", preflight=check_eval_paths)
def main(cfg: DictConfig) -> None:
    from fashionlab.evaluation.run import evaluate  # after Hydra's logging set-up, as in train.py

    evaluate(cfg)


if __name__ == "__main__":
    main()
