"""A sweep from a composed `sweep` config: open the study, run trials up to the budget, report."""

from __future__ import annotations

import gc
import logging
import math
import shlex
import time
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from fashionlab.sweep.objective import Objective, check_train_overrides, train_overrides
from fashionlab.sweep.report import summary, write_report
from fashionlab.sweep.space import check_space
from fashionlab.sweep.study import claim_trial, heartbeat, open_study, quiet_experimental, storage_url

log = logging.getLogger(__name__)


def run_trial(study: optuna.Study, trial: optuna.Trial, objective: Objective) -> TrialState:
    """Run one trial and record its outcome: COMPLETE with the metric, PRUNED, or FAIL — a trial
    that raises (out of memory, NaN loss, a bad combination) fails and the sweep goes on."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        state, value = TrialState.PRUNED, None
    except Exception:
        log.exception("trial %d failed", trial.number)
        state, value = TrialState.FAIL, None
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        state = TrialState.COMPLETE
        if not math.isfinite(value):
            trial.set_user_attr("error", f"metric is {value}")
            log.warning("trial %d failed: metric is %s", trial.number, value)
            state, value = TrialState.FAIL, None
    study.tell(trial, value, state=state)
    gc.collect()
    return state


def record_train_overrides(study: optuna.Study, overrides: list[str], sweep_dir: Path) -> None:
    """Keep the trials' train overrides in the study and in `<sweep dir>/train_overrides.yaml`;
    warn when a resumed or shared study was started with others (its trials are then not alike)."""
    before = study.user_attrs.get("train_overrides")
    if before is None:
        study.set_user_attr("train_overrides", overrides)
    elif list(before) != overrides:
        log.warning("study %r was started with train overrides %s, this worker uses %s: trials.csv "
                    "records each trial's", study.study_name, shlex.join(before), shlex.join(overrides))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(overrides), sweep_dir / "train_overrides.yaml")
    log.info("train overrides of every trial: %s", shlex.join(overrides) or "(none)")


def run_sweep(cfg: DictConfig) -> dict[str, Any]:
    """Run trials until the study holds `sweep.n_trials` (all workers together) or `sweep.timeout`
    seconds pass; write best.yaml, trials.csv and plots into the sweep folder; return a summary.

    Every trial trains with `sweep.train_overrides` (sweep.py's command line) plus its sampled values.
    """
    sweep = cfg.sweep
    sweep_dir = Path(cfg.paths.output_dir)
    conf_dir = str(Path(cfg.sweep.config_dir).resolve())
    space = OmegaConf.to_container(cfg.search_space, resolve=True)
    overrides = train_overrides(sweep)
    base_cfg = check_train_overrides(conf_dir, overrides)
    check_space(space, base_cfg, conf_dir)
    with open_dict(sweep):
        sweep.metric = sweep.metric or str(base_cfg.training.monitor)
        sweep.direction = sweep.direction or (
            "maximize" if base_cfg.training.monitor_mode == "max" else "minimize")

    study, storage = open_study(sweep, sweep_dir)
    log.info("study %r in %s; sweep folder %s", study.study_name, storage_url(sweep, sweep_dir), sweep_dir)
    record_train_overrides(study, overrides, sweep_dir)
    objective = Objective(sweep, space, base_cfg, conf_dir, sweep_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.monotonic()
    timeout = float(sweep.timeout) if sweep.get("timeout") else None
    while timeout is None or time.monotonic() - started < timeout:
        if storage.get_heartbeat_interval():
            with quiet_experimental():
                optuna.storages.fail_stale_trials(study)  # trials of dead workers: FAIL, then re-queued
        trial = claim_trial(study, storage, int(sweep.n_trials))
        if trial is None:
            break
        with heartbeat(storage, trial):
            run_trial(study, trial, objective)

    write_report(study, base_cfg, str(sweep.metric), sweep_dir, overrides)
    result = dict(summary(study))
    log.info("study %r: %d trials (%d complete, %d pruned, %d failed); best %s = %s (trial %s)",
             result["study"], result["trials"], result["complete"], result["pruned"], result["fail"],
             sweep.metric, result["best_value"], result["best_trial"])
    return result
