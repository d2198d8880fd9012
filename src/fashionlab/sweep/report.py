"""Sweep results: best trial as a `conf/experiment/` file, trials table and Optuna plots."""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from fashionlab.sweep.space import is_group
from fashionlab.sweep.study import quiet_experimental

log = logging.getLogger(__name__)


def best_experiment(study: optuna.Study, train_cfg: DictConfig, metric: str,
                    train_overrides: Sequence[str] = ()) -> str:
    """YAML of an experiment file that trains with the best trial's parameters; the sweep's train
    overrides (budget, data) are recorded in a comment, with the command that reproduces the trial."""
    best = study.best_trial
    groups = {k: v for k, v in best.params.items() if is_group(k, train_cfg)}
    values = OmegaConf.create()
    for key, value in best.params.items():
        if key not in groups:
            OmegaConf.update(values, key, value, force_add=True)
    lines = [
        "# @package _global_",
        f"# Best trial of study {study.study_name!r}: trial {best.number}, "
        f"{metric} = {best.value:.6g}.",
        "# Train with it where it lies: python train.py experiment=<path of this file>",
        "# (or copy it into conf/experiment/ and use experiment=<file name>)",
    ]
    if train_overrides:
        lines += [
            "# The sweep's train overrides (every trial) are not included below; the best trial ran as",
            f"#   python train.py experiment=<path of this file> {shlex.join(train_overrides)}",
            f"# train_overrides: {json.dumps(list(train_overrides))}",
        ]
    body = {}
    if groups:
        body["defaults"] = [{f"override /{k}": v} for k, v in groups.items()]
    body.update(OmegaConf.to_container(values))
    return "\n".join(lines) + "\n" + OmegaConf.to_yaml(OmegaConf.create(body))


def _plots(study: optuna.Study) -> dict[str, Any]:
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as vis_mpl

    plots = {"history": (vis.plot_optimization_history, vis_mpl.plot_optimization_history),
             "parallel_coordinate": (vis.plot_parallel_coordinate, vis_mpl.plot_parallel_coordinate)}
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_complete >= 2:
        plots["param_importances"] = (vis.plot_param_importances, vis_mpl.plot_param_importances)
    else:
        log.info("parameter-importance plot skipped: %d completed trial(s), it needs at least 2", n_complete)
    return plots


def write_report(study: optuna.Study, train_cfg: DictConfig, metric: str, sweep_dir: Path,
                 train_overrides: Sequence[str] = ()) -> dict[str, Path]:
    """Write best.yaml, trials.csv (with each trial's train overrides) and the plots (HTML and PNG)
    into the sweep folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    study.trials_dataframe().to_csv(sweep_dir / "trials.csv", index=False)
    written["trials"] = sweep_dir / "trials.csv"
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.warning("no completed trial in study %r: no best.yaml and no plots", study.study_name)
        return written
    (sweep_dir / "best.yaml").write_text(best_experiment(study, train_cfg, metric, train_overrides))
    written["best"] = sweep_dir / "best.yaml"
    plot_dir = sweep_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    for name, (interactive, static) in _plots(study).items():
        try:
            interactive(study).write_html(plot_dir / f"{name}.html")
            written[f"{name}.html"] = plot_dir / f"{name}.html"
            with quiet_experimental():
                axes = static(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.savefig(plot_dir / f"{name}.png", dpi=110, bbox_inches="tight")
            plt.close(figure)
            written[f"{name}.png"] = plot_dir / f"{name}.png"
        except (ValueError, RuntimeError, ImportError) as error:
            log.warning("plot %s skipped: %s", name, error)
    return written


def summary(study: optuna.Study) -> Mapping[str, Any]:
    """Counts per trial state and the best value, for the log and the return value."""
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] += 1
    completed = counts["complete"] > 0
    return {"study": study.study_name, "trials": sum(counts.values()), **counts,
            "best_value": study.best_value if completed else None,
            "best_trial": study.best_trial.number if completed else None,
            "best_params": study.best_trial.params if completed else None}
