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

from fashionlab.redaction import config_secrets, mask_text, masked_argv, scrub_files
from fashionlab.sweep.faults import heartbeat, requeue_interrupted, tell_result
from fashionlab.sweep.objective import Objective, check_train_overrides, train_overrides
from fashionlab.sweep.report import summary, write_report
from fashionlab.sweep.space import check_space
from fashionlab.sweep.study import WAIT, claim_trial, open_study, redact, scrub_password, storage_url
from fashionlab.sweep.wandb_logging import close_trial_run, log_study_summary

log = logging.getLogger(__name__)


def run_trial(study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial,
              objective: Objective, max_retry: int | None = 1) -> TrialState:
    """Run one trial and record its outcome: COMPLETE with the metric, PRUNED, or FAIL — a trial
    that raises (out of memory, NaN loss, a bad combination) fails and the sweep goes on.
    An interrupted trial (Ctrl-C) fails and is queued to run again, then the interrupt goes on.
    The trial's W&B run, if any, is tagged with the state and finished."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        state, value = TrialState.PRUNED, None
    except Exception as error:
        log.exception("trial %d failed", trial.number)
        if "error" not in trial.user_attrs:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:4000])
        state, value = TrialState.FAIL, None
    except BaseException:
        close_trial_run(None)
        requeue_interrupted(study, storage, trial, max_retry)
        raise
    else:
        state = TrialState.COMPLETE
        if not math.isfinite(value):
            trial.set_user_attr("error", f"metric is {value}")
            log.warning("trial %d failed: metric is %s", trial.number, value)
            state, value = TrialState.FAIL, None
    try:
        state = tell_result(study, storage, trial, value, state)
    finally:
        close_trial_run(state, value)
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
    """Run trials until `sweep.n_trials` have finished (all workers together; see
    `counts_toward_budget`) or `sweep.timeout` seconds pass; write best.yaml, trials.csv and plots
    into the sweep folder; return a summary.

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

    url = storage_url(sweep, sweep_dir)
    scrub_password(url, sweep_dir)
    # what the sweep writes (its folder, the study, W&B) shows the trials' storage secrets masked
    secrets = config_secrets(base_cfg)
    scrub_files((sweep_dir / ".hydra").glob("*.yaml"), secrets)
    shown = [mask_text(override, secrets) for override in overrides]
    study, storage = open_study(sweep, sweep_dir)
    log.info("study %r in %s; sweep folder %s", study.study_name, redact(url), sweep_dir)
    record_train_overrides(study, shown, sweep_dir)
    objective = Objective(sweep, space, base_cfg, conf_dir, sweep_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.monotonic()
    timeout = float(sweep.timeout) if sweep.get("timeout") else None
    max_retry = sweep.get("max_retry", 1)
    waiting = False
    while timeout is None or time.monotonic() - started < timeout:
        trial = claim_trial(study, storage, int(sweep.n_trials))
        if trial is None:
            break
        if trial == WAIT:
            if not waiting:
                log.info("all %d trials claimed: waiting for the running ones (a dead worker's trial is "
                         "failed after the grace period and runs again here)", int(sweep.n_trials))
            waiting = True
            time.sleep(storage.get_heartbeat_interval() or 1)
            continue
        waiting = False
        with heartbeat(storage, trial):
            run_trial(study, storage, trial, objective, max_retry)

    write_report(study, base_cfg, str(sweep.metric), sweep_dir, shown)
    result = dict(summary(study))
    with masked_argv(secrets):
        log_study_summary(study, base_cfg, sweep_dir, str(sweep.metric), result, shown)
    log.info("study %r: %d trials (%d complete, %d pruned, %d failed); best %s = %s (trial %s)",
             result["study"], result["trials"], result["complete"], result["pruned"], result["fail"],
             sweep.metric, result["best_value"], result["best_trial"])
    return result
