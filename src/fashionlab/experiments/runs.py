"""Finished training runs as folders: find them (a run, a multirun or a sweep folder) and read what
they left behind (metrics.json, the `.hydra` configs, the newest evaluation report)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fashionlab.errors import RunFolderError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
# Written by every training run: running, finished, failed or interrupted (with the error).
STATUS_FILE = "status.json"
# Interpolations that differ between runs only because the runs live in different folders.
LOCATION_REFS = ("${paths.", "${hydra:")


@dataclass
class Run:
    """One training run folder and what it records."""

    path: Path
    metrics: dict[str, Any]
    config: DictConfig = field(default_factory=OmegaConf.create)
    choices: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    eval_dir: Path | None = None
    evaluation: dict[str, Any] | None = None
    eval_overrides: list[str] = field(default_factory=list)

    @property
    def monitor(self) -> str | None:
        """The monitored metric (training.monitor), e.g. `val/article/acc`."""
        return _select(self.config, "training.monitor")

    @property
    def monitor_mode(self) -> str:
        return str(_select(self.config, "training.monitor_mode") or "max")


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key)
    except Exception:  # an interpolation that only resolves inside Hydra
        return None


def run_status(folder: Path) -> dict[str, Any]:
    """The run's status.json ({} when absent or unreadable: runs from before it existed)."""
    try:
        status = json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def is_finished(folder: Path) -> bool:
    """A run with metrics.json whose status.json, if any, does not say it failed."""
    return (folder / METRICS_FILE).is_file() and run_status(folder).get("status") not in (
        "failed", "interrupted")


def why_skipped(folder: Path) -> str:
    """Why a run folder is not compared: its status and error, or unfinished."""
    status = run_status(folder)
    if status.get("status") in ("failed", "interrupted"):
        return f"{status['status']}: {status.get('error', 'no error recorded')}"
    return "unfinished or pruned (no metrics.json)"


def _is_run_like(folder: Path) -> bool:
    return (folder / METRICS_FILE).is_file() or (folder / ".hydra").is_dir()


def _job_order(folder: Path) -> tuple[int, str]:
    return (int(folder.name), "") if folder.name.isdigit() else (1 << 30, folder.name)


def find_runs(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(run folders, skipped folders) for the given folders: a folder with metrics.json is a run; a
    Hydra multirun folder (numbered job folders) or a sweep folder (trials/NNNN) expands to its
    runs, skipping those without metrics.json (pruned or unfinished) or whose status.json says
    they failed (`why_skipped` says which).

    RunFolderError names a folder that is neither a run nor holds any finished run.
    """
    runs: list[Path] = []
    skipped: list[Path] = []
    for given in paths:
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise RunFolderError(f"{folder}: no such folder")
        if is_finished(folder):
            found = [folder]
        elif _is_run_like(folder) and (folder / STATUS_FILE).is_file():
            raise RunFolderError(f"{folder}: not a finished run ({why_skipped(folder)})")
        else:
            below = [d for parent in (folder, folder / "trials") if parent.is_dir()
                     for d in parent.iterdir() if d.is_dir() and _is_run_like(d)]
            below.sort(key=lambda d: (d.parent != folder, *_job_order(d)))
            found = [d for d in below if is_finished(d)]
            skipped += [d for d in below if d not in found]
            if not found:
                what = (f"none of its {len(below)} runs has finished" if below
                        else "not a finished training run, nor a multirun or sweep folder with runs")
                raise RunFolderError(f"{folder}: no {METRICS_FILE} ({what})")
        runs += [r for r in (f.resolve() for f in found) if r not in runs]
    return runs, skipped


def newest_evaluation(run_dir: Path) -> Path | None:
    """The run's newest evaluation folder (`<run>/eval/*/report.json`), if any."""
    reports = sorted((run_dir / "eval").glob("*/report.json"), key=lambda p: (p.stat().st_mtime, p.name))
    return reports[-1].parent if reports else None


def _load_yaml(path: Path) -> Any:
    return OmegaConf.load(path) if path.is_file() else None


def load_run(path: Path) -> Run:
    """Read a run folder; RunFolderError when its metrics.json is missing or not JSON."""
    try:
        metrics = json.loads((path / METRICS_FILE).read_text())
    except FileNotFoundError as error:
        raise RunFolderError(f"{path}: no {METRICS_FILE} (not a finished training run)") from error
    except (OSError, ValueError) as error:
        raise RunFolderError(f"{path / METRICS_FILE}: unreadable ({error})") from error
    run = Run(path=path, metrics=metrics)
    config = _load_yaml(path / ".hydra" / "config.yaml")
    if isinstance(config, DictConfig):
        run.config = config
    hydra = _load_yaml(path / ".hydra" / "hydra.yaml")
    choices = OmegaConf.select(hydra, "hydra.runtime.choices") if hydra is not None else None
    if choices is not None:
        run.choices = {str(k): str(v) for k, v in choices.items()
                       if v is not None and not str(k).startswith("hydra/")}
    overrides = _load_yaml(path / ".hydra" / "overrides.yaml")
    run.overrides = [str(o) for o in overrides] if overrides is not None else []
    run.eval_dir = newest_evaluation(path)
    if run.eval_dir is not None:
        try:
            run.evaluation = json.loads((run.eval_dir / "report.json").read_text())
        except (OSError, ValueError) as error:
            log.warning("%s: evaluation report unreadable (%s), left out", run.eval_dir, error)
        eval_overrides = _load_yaml(run.eval_dir / ".hydra" / "overrides.yaml")
        run.eval_overrides = [str(o) for o in eval_overrides] if eval_overrides is not None else []
    return run


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """`{dotted.key: value}` of a saved config; interpolations resolved where they can be outside
    Hydra, except those of the run's location (`${paths.…}`, `${hydra:…}`): kept as written, like
    those that cannot be resolved. Lists stay lists."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        key = prefix[:-1]
        if isinstance(node, str) and "${" in node and not any(p in node for p in LOCATION_REFS):
            resolved = _select(cfg, key)
            if resolved is not None:
                node = (OmegaConf.to_container(resolved, resolve=True)
                        if OmegaConf.is_config(resolved) else resolved)
        flat[key] = node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return flat


def count_checkpoint_parameters(checkpoint: str | Path | None) -> int | None:
    """Trainable-shaped parameters in a checkpoint's state_dict (BatchNorm statistics left out), for
    runs whose metrics.json predates `num_parameters`; None when there is no readable checkpoint."""
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception as error:  # any unreadable or foreign file: the column stays empty
        log.warning("%s: parameters not counted (%s)", checkpoint, error)
        return None
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(t.numel() for k, t in state.items() if not k.endswith(buffers)))
