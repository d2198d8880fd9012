"""A sweep as one W&B view: each trial a run in the study's group (its sampled parameters in the
run config, its final state as a tag), and one summary run at the end of sweep.py with the trials
table, the parameter importances and the optimisation history as W&B charts and best.yaml as an
artifact. Only when the trials log to W&B (`logger=wandb`, the default)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, open_dict
from optuna.trial import TrialState

from fashionlab.wandb_utils import finish_wandb, stage_in_folder

log = logging.getLogger(__name__)

#: The tag a trial's W&B run gets for its final state; a trial interrupted (Ctrl-C) gets "interrupted".
STATE_TAGS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


def uses_wandb(cfg: DictConfig) -> bool:
    """Whether a composed train config logs to W&B."""
    return "Wandb" in str((cfg.get("logger") or {}).get("_target_", ""))


def configure_trial_run(cfg: DictConfig, study_name: str, trial: optuna.Trial,
                        params: Mapping[str, Any]) -> None:
    """Put the trial's W&B run in the study's group, named `<study>-trial-<n>`, with the study,
    trial number and sampled parameters under `optuna` in the run config."""
    if not uses_wandb(cfg):
        return
    with open_dict(cfg):
        cfg.logger.group = study_name
        cfg.logger.name = f"{study_name}-trial-{trial.number}"
        cfg.logger.job_type = "sweep-trial"
        cfg.logger.config = {"optuna": {"study": study_name, "trial": trial.number, "params": dict(params)}}


def close_trial_run(state: TrialState | None, value: float | None = None) -> None:
    """Tag the trial's open W&B run (train.py left it open) with its final state, then finish it
    (exit code 0 for a complete trial). No-op when the trial opened no run."""
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb is not None else None
    if run is None:
        return
    tag = STATE_TAGS.get(state, "interrupted")
    run.tags = (*run.tags, tag)
    run.summary.update({"trial_state": tag, **({"trial_value": value} if value is not None else {})})
    finish_wandb(0 if state == TrialState.COMPLETE else 1)


def artifact_name(text: str) -> str:
    """`text` with the characters W&B does not allow in artifact names replaced by '-'."""
    return re.sub(r"[^\w.-]", "-", text)


def trials_table(study: optuna.Study) -> Any:
    """Optuna's trials dataframe as a wandb.Table (times and durations as text)."""
    import wandb

    frame = study.trials_dataframe()
    for column in frame.columns:
        if frame[column].dtype.kind in "mMO":
            frame[column] = frame[column].astype(str)
    return wandb.Table(dataframe=frame)


def history_chart(study: optuna.Study, metric: str) -> Any:
    """The optimisation history: each complete trial's value and the best so far, against trial number."""
    import wandb

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [float(t.value) for t in trials]
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    return wandb.plot.line_series(xs=[t.number for t in trials], ys=[values, best],
                                  keys=[metric, "best so far"], title="Optimization history", xname="trial")


def importance_chart(study: optuna.Study) -> Any | None:
    """Optuna's parameter importances as a W&B bar chart (None with fewer than 2 complete trials,
    or when Optuna cannot compute them)."""
    import wandb

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    try:
        importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as error:
        log.warning("parameter importances skipped: %s", error)
        return None
    table = wandb.Table(columns=["parameter", "importance"],
                        data=[[k, float(v)] for k, v in importances.items()])
    return wandb.plot.bar(table, "parameter", "importance", title="Parameter importances")


def log_study_summary(study: optuna.Study, train_cfg: DictConfig, sweep_dir: Path, metric: str,
                      counts: Mapping[str, Any], train_overrides: Sequence[str] = ()) -> None:
    """One W&B run `<study>-summary` (job type sweep-summary) in the study's group: the trials
    table, the optimisation history and parameter importances charts, the counts per state and the
    best value in the summary, best.yaml as the `<study>-best` artifact (type sweep-best)."""
    if not uses_wandb(train_cfg):
        return
    import wandb

    logger = train_cfg.logger
    name = str(study.study_name)
    stage_in_folder(sweep_dir)
    run = wandb.init(project=logger.get("project") or "fashionlab", group=name, name=f"{name}-summary",
                     job_type="sweep-summary", tags=["sweep-summary"], dir=str(sweep_dir),
                     mode="offline" if logger.get("offline", True) else "online", reinit="finish_previous",
                     config={"study": name, "metric": metric, "direction": study.direction.name.lower(),
                             "train_overrides": list(train_overrides)})
    exit_code = 1
    try:
        payload = {"sweep/trials": trials_table(study)}
        if counts.get("complete"):
            payload["sweep/optimization_history"] = history_chart(study, metric)
        importance = importance_chart(study)
        if importance is not None:
            payload["sweep/param_importances"] = importance
        run.log(payload)
        run.summary.update({"trials": counts["trials"],
                            **{f"trials_{s}": counts[s] for s in ("complete", "pruned", "fail")}})
        best = sweep_dir / "best.yaml"
        if counts.get("complete") and best.is_file():
            run.summary.update({"best_value": counts["best_value"], "best_trial": counts["best_trial"]})
            artifact = wandb.Artifact(artifact_name(f"{name}-best"), type="sweep-best", metadata={
                "trial": counts["best_trial"], "value": counts["best_value"], "metric": metric,
                "params": dict(counts["best_params"])})
            artifact.add_file(str(best), name="best.yaml", policy="immutable")
            run.log_artifact(artifact, aliases=["best", "latest"])
        exit_code = 0
    finally:
        finish_wandb(exit_code)
