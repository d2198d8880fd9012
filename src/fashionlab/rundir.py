"""Run folders: unique names, the folder a resumed run continues in, and refusal of used folders.

Defines the OmegaConf resolvers that `conf/hydra/default.yaml` uses (registered by
`fashionlab.resolvers.register` when `fashionlab` is imported):
`fl_run_dir` (a new `<date>_<time>_<6 hex>` folder, or a checkpoint's own run folder when
`ckpt_path` is set), `fl_new_dir` (a new folder under a base, e.g. a multirun's sweep folder),
`fl_hydra_subdir` (`.hydra`, or null when the folder already has a `.hydra/config.yaml`, so
that a resumed or refused launch never overwrites the record of the run that owns the folder) and
`fl_rank_zero_file` (the job's log file, or the null device in a process that is not global rank 0).

Under a multi-process launch every process composes the config with the same run folder; only the
process its launcher announces as global rank 0 (`launched_as_rank_zero`) claims that folder and
writes Hydra's record and log file into it, whichever process starts first.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

from fashionlab.errors import ConfigError

_STAMP: str | None = None
# Folders whose .hydra/config.yaml existed before this process started (decided once per folder).
_HYDRA_SUBDIR: dict[str, str | None] = {}


def unique_stamp() -> str:
    """`<date>_<time>_<6 hex>`, drawn once per process: Hydra may evaluate a folder's
    interpolation several times, and every evaluation must name the same folder; the random
    suffix keeps two processes started in the same second apart."""
    global _STAMP
    if _STAMP is None:
        _STAMP = f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{secrets.token_hex(3)}"
    return _STAMP


def checkpoint_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run folder a checkpoint belongs to (`<run>/checkpoints/x.ckpt`), or None when the file
    is not in a run's `checkpoints/` folder."""
    path = Path(str(ckpt_path)).expanduser().absolute()
    return path.parent.parent if path.parent.name == "checkpoints" else None


def run_dir_for(ckpt_path: str | None, runs_dir: str) -> str:
    """Hydra run dir of a training run: the checkpoint's run folder when resuming from one,
    otherwise a new `<runs_dir>/<date>_<time>_<6 hex>`."""
    if ckpt_path not in (None, "", "null"):
        run_dir = checkpoint_run_dir(ckpt_path)
        if run_dir is not None:
            return str(run_dir)
    return new_dir(runs_dir)


def new_dir(base: str) -> str:
    return str(Path(base) / unique_stamp())


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher announced it in the environment:
    `RANK` (torchrun, a scheduler), else `LOCAL_RANK` and `NODE_RANK`/`GROUP_RANK` (processes
    Lightning starts, one launch per node), else `SLURM_PROCID` (srun), else
    `JSM_NAMESPACE_RANK` (LSF); a process started alone is rank 0."""
    env = os.environ
    if env.get("RANK", "").strip():
        return int(env["RANK"]) == 0
    if any(env.get(k, "").strip() for k in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK")):
        return all(int(env.get(k) or 0) == 0 for k in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK"))
    for key in ("SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if env.get(key, "").strip():
            return int(env[key]) == 0
    return True


def rank_zero_file(path: str) -> str:
    """`path` in global rank 0, the null device in the other processes of a launch (Hydra's log
    file: one per run, written by the process that owns the folder)."""
    return path if launched_as_rank_zero() else os.devnull


def hydra_subdir(output_dir: str) -> str | None:
    """Where Hydra saves the launch's config: `.hydra`, or nowhere (None) when the folder already
    holds one (a resumed run keeps its original record; a refused launch leaves it untouched) or
    when this process is not global rank 0 (the record is rank 0's)."""
    if not launched_as_rank_zero():
        return None
    key = str(Path(output_dir).absolute())
    if key not in _HYDRA_SUBDIR:
        exists = (Path(key) / ".hydra" / "config.yaml").is_file()
        _HYDRA_SUBDIR[key] = None if exists else ".hydra"
    return _HYDRA_SUBDIR[key]


def had_hydra_record(run_dir: str | Path) -> bool:
    """True when this process found `run_dir/.hydra/config.yaml` already there at launch."""
    return _HYDRA_SUBDIR.get(str(Path(run_dir).absolute()), ".hydra") is None


def check_run_folder(run_dir: Path, resuming: bool = False, kind: str = "run") -> None:
    """Refuse a folder that already holds something other than Hydra's own launch files
    (`.hydra/`, `*.log`) or that had a `.hydra` record before this launch, unless resuming."""
    if resuming or not run_dir.is_dir():
        return
    used = sorted(p.name for p in run_dir.iterdir() if p.name != ".hydra" and p.suffix != ".log")
    if used or had_hydra_record(run_dir):
        shown = ", ".join(used[:5]) or ".hydra/config.yaml"
        hint = (f", or resume that run with ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
                if kind == "run" else "")
        raise ConfigError(
            f"{kind} folder {run_dir} already holds a {kind} ({shown}); choose another "
            f"hydra.run.dir (or leave it unset for a new folder){hint}")


def eval_dir_for(ckpt_path: str, log_dir: str, stamp: str | None = None) -> str:
    """Hydra run dir of an evaluation: `<run dir>/eval/<stamp>` next to the checkpoint's run,
    or `<log_dir>/evaluate/runs/<stamp>` when the checkpoint does not exist. The stamp defaults
    to `<date>_<time>_<6 hex>`, drawn once per process (unique across processes)."""
    stamp = stamp or unique_stamp()
    path = Path(str(ckpt_path)).expanduser()
    if path.is_file():
        run_dir = checkpoint_run_dir(path) or path.parent
        return str(run_dir / "eval" / stamp)
    return str(Path(log_dir) / "evaluate" / "runs" / stamp)


RESOLVERS = {"fl_run_dir": run_dir_for, "fl_new_dir": new_dir, "fl_hydra_subdir": hydra_subdir,
             "fl_rank_zero_file": rank_zero_file, "fl_eval_dir": eval_dir_for}
