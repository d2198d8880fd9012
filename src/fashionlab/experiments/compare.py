"""Compare finished runs: one row per run with the config keys that differ, test accuracy and
macro-F1 per task, retrieval P@1 / mAP@R when evaluated, parameters, throughput and wall time,
sorted by the monitored metric (or a column chosen with `sort`); written as comparison.md,
comparison.csv and comparison.png."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fashionlab.errors import ConfigError
from fashionlab.experiments.runs import (
    Run,
    count_checkpoint_parameters,
    find_runs,
    flat_config,
    load_run,
    why_skipped,
)

# Config keys that differ between runs without being a choice of the experiment.
IGNORED_PREFIXES = ("paths.", "hydra.", "logger.name", "logger.group")
RETRIEVAL_METRICS = {"precision_at_1": "P@1", "map_at_r": "mAP@R"}
TEST_METRICS = {"acc": "acc", "f1_macro": "macro-F1"}
METRIC_PREFIXES = ("test/", "val/", "train/", "retrieval/")


@dataclass
class Comparison:
    """The compared runs, their table (best first) and what it was sorted by."""

    runs: list[Run]
    table: pd.DataFrame
    monitor: str | None
    mode: str
    config_columns: list[str]
    skipped: list[Path] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def best(self) -> Run:
        return self.runs[0]


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short names: each run's path below the runs' common folder, with that folder's name when the
    runs are numbered jobs of one multirun (e.g. `<stamp>/0`)."""
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    labels = [p.relative_to(common) for p in paths]
    if any(label.name.isdigit() for label in labels):
        labels = [p.relative_to(common.parent) for p in paths]
    return [str(label) for label in labels]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def config_differences(runs: Sequence[Run]) -> pd.DataFrame:
    """Columns for the config group choices and every config value that is not the same in every
    run, including the values under a differing group (`backbone.name` beside `backbone`), so a
    setting such as `backbone.pretrained` shows however it was set."""
    choices = [run.choices for run in runs]
    flats = [flat_config(run.config) for run in runs]
    columns: dict[str, list[Any]] = {}
    for group in dict.fromkeys(k for c in choices for k in c):
        values = [c.get(group) for c in choices]
        if len({_key(v) for v in values}) > 1:
            columns[group] = values
    for key in dict.fromkeys(k for f in flats for k in f):
        if key.startswith(IGNORED_PREFIXES) or key in columns:
            continue
        values = [f.get(key) for f in flats]
        if len({_key(v) for v in values}) > 1:
            columns[key] = [_key(v) if isinstance(v, list | dict) else v for v in values]
    return pd.DataFrame(columns, index=range(len(runs)))


def setting_labels(comparison: Comparison, width: int = 48) -> list[str]:
    """One label per row: the row's values of the differing config keys (`key=value, ...`, wrapped
    at `width` characters); the run's name where no key differs or two rows would read the same."""
    table = comparison.table
    labels = []
    for i in range(len(table)):
        items = [f"{c}={_format(c, table[c].iloc[i])}" for c in comparison.config_columns]
        lines: list[str] = []
        for item in items:  # whole `key=value` items, as many to a line as fit in `width`
            if lines and len(lines[-1]) + 2 + len(item) <= width:
                lines[-1] += f", {item}"
            else:
                lines.append(item)
        labels.append(",\n".join(lines))
    counts = Counter(labels)
    return [label if label and counts[label] == 1 else
            (f"{label}\n({run})" if label else str(run))
            for label, run in zip(labels, table["run"], strict=True)]


def common_monitor(runs: Sequence[Run]) -> tuple[str | None, str]:
    """The monitored metric most runs share (training.monitor) and its mode (max / min)."""
    monitors = Counter(run.monitor for run in runs if run.monitor)
    if not monitors:
        return None, "max"
    monitor = monitors.most_common(1)[0][0]
    mode = next(run.monitor_mode for run in runs if run.monitor == monitor)
    return monitor, mode


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def metric_columns(runs: Sequence[Run], monitor: str | None) -> pd.DataFrame:
    """Monitored metric, test metrics per task, retrieval metrics per task, size, speed, time."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        m = run.metrics
        row: dict[str, Any] = {}
        if monitor:
            row[monitor] = _number(m.get(monitor))
        for key, value in m.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "test" and parts[2] in TEST_METRICS:
                row[f"test/{parts[1]}/{TEST_METRICS[parts[2]]}"] = _number(value)
        retrieval = (run.evaluation or {}).get("retrieval", {}).get("metrics", {})
        for task, values in retrieval.items():
            for name, label in RETRIEVAL_METRICS.items():
                row[f"retrieval/{task}/{label}"] = _number(values.get(name))
        params = m.get("num_parameters")
        row["num_parameters"] = params if params is not None else count_checkpoint_parameters(
            m.get("best_checkpoint"))
        row["train_images_per_s"] = _number(m.get("train_images_per_s"))
        row["duration_s"] = _number(m.get("duration_s"))
        rows.append(row)
    table = pd.DataFrame(rows, index=range(len(runs)))
    metric_cols = sorted((c for c in table.columns if c.startswith(("test/", "retrieval/"))),
                         key=lambda c: (c.startswith("retrieval/"), c))
    order = ([monitor] if monitor else []) + [c for c in metric_cols if c != monitor]
    return table[[*order, "num_parameters", "train_images_per_s", "duration_s"]]


def sort_column(sort: str, table: pd.DataFrame) -> tuple[str, str]:
    """`COLUMN` (highest first) or `COLUMN:min` / `COLUMN:max`, a numeric column of the table."""
    column, _, mode = sort.rpartition(":") if sort.endswith((":min", ":max")) else (sort, "", "max")
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    if column not in numeric:
        raise ConfigError(f"--sort {sort!r}: not a numeric column of the comparison; choose one of "
                          + ", ".join(numeric))
    return column, mode


def compare_runs(runs: list[Run], skipped: Sequence[Path] = (), sort: str | None = None) -> Comparison:
    """The comparison table of loaded runs, best (by the monitored metric, or by `sort`) first."""
    monitor, mode = common_monitor(runs)
    config = config_differences(runs)
    metrics = metric_columns(runs, monitor)
    table = pd.concat([pd.DataFrame({"run": run_labels([r.path for r in runs])}), config, metrics],
                      axis=1)
    table["path"] = [str(r.path) for r in runs]
    if sort:
        monitor, mode = sort_column(sort, table)
    if monitor:
        order = table[monitor].sort_values(ascending=(mode == "min"), na_position="last",
                                           kind="stable").index
        table = table.loc[order].reset_index(drop=True)
        runs = [runs[i] for i in order]
    return Comparison(runs=runs, table=table, monitor=monitor, mode=mode,
                      config_columns=list(config.columns), skipped=list(skipped))


def load_comparison(paths: Iterable[str | Path], sort: str | None = None) -> Comparison:
    """Find the runs under `paths` (runs, multirun or sweep folders) and compare them."""
    run_dirs, skipped = find_runs(paths)
    return compare_runs([load_run(p) for p in run_dirs], skipped, sort)


def _format(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if column == "num_parameters":
        return f"{value / 1e6:.2f} M"
    if column == "train_images_per_s":
        return f"{value:.1f}"
    if column == "duration_s":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.4f}" if column.startswith(METRIC_PREFIXES) else f"{value:g}"
    return str(value)


DISPLAY_NAMES = {"num_parameters": "params", "train_images_per_s": "train img/s",
                 "duration_s": "wall time (s)"}


def markdown_table(comparison: Comparison) -> str:
    """The table as GitHub markdown (without the path column)."""
    table = comparison.table.drop(columns=["path"])
    shown = pd.DataFrame({DISPLAY_NAMES.get(c, c): [_format(c, v) for v in table[c]] for c in table.columns})
    return shown.to_markdown(index=False, disable_numparse=True)


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """Bar chart per run: the monitored metric and the test accuracy of its task (when tested), each
    bar labelled with the run's differing settings (`setting_labels`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = comparison.table
    panels = [c for c in (comparison.monitor,) if c and table[c].notna().any()]
    if comparison.monitor and comparison.monitor.count("/") == 2:
        test_acc = f"test/{comparison.monitor.split('/')[1]}/acc"
        if test_acc != comparison.monitor and test_acc in table and table[test_acc].notna().any():
            panels.append(test_acc)
    panels = panels or [c for c in table.columns if c.startswith("test/")][:1] or ["duration_s"]
    labels = setting_labels(comparison)[::-1]
    longest = max(len(line) for label in labels for line in label.split("\n"))
    lines = max(label.count("\n") + 1 for label in labels)
    height = max(2.5, (0.2 + 0.25 * lines) * len(table) + 1.2)
    label_width = 0.075 * longest  # inches: the labels, drawn once
    figure, axes = plt.subplots(1, len(panels), figsize=(label_width + 4.5 * len(panels), height),
                                squeeze=False, sharey=True)
    for ax, column in zip(axes[0], panels, strict=True):
        values = pd.to_numeric(table[column], errors="coerce").fillna(0.0).tolist()[::-1]
        bars = ax.barh(labels, values, color="#4C72B0")
        bars[-1].set_color("#DD8452")  # the best run (first row) is drawn at the top
        ax.bar_label(bars, labels=[_format(column, v) for v in values], padding=2, fontsize=8)
        ax.set_title(DISPLAY_NAMES.get(column, column))
        ax.margins(x=0.2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def markdown_report(comparison: Comparison, heading: str = "# Run comparison") -> str:
    """comparison.md: what was sorted by, the table, the runs' folders and evaluations."""
    direction = "highest" if comparison.mode == "max" else "lowest"
    lines = [heading, ""]
    if comparison.monitor:
        lines += [f"{len(comparison.runs)} runs, sorted by `{comparison.monitor}` ({direction} first). "
                  "Leading columns: the config keys that differ between the runs.", ""]
    lines += [markdown_table(comparison), "", "Runs:", "", *run_listing(comparison)]
    return "\n".join(lines) + "\n"


def run_listing(comparison: Comparison) -> list[str]:
    """Markdown lines: each run's label, folder and evaluation, then the skipped folders."""
    lines = []
    for label, run in zip(comparison.table["run"], comparison.runs, strict=True):
        evaluated = f" (evaluation `{run.eval_dir}`)" if run.eval_dir else ""
        lines.append(f"- `{label}`: `{run.path}`{evaluated}")
    if comparison.skipped:
        lines += ["", "Skipped (failed, pruned or unfinished):", "",
                  *(f"- `{p}`: {why_skipped(p)}" for p in comparison.skipped)]
    return lines


def write_comparison(comparison: Comparison, out: Path) -> dict[str, Path]:
    """Write comparison.md, comparison.csv and comparison.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "comparison.csv", "md": out / "comparison.md", "png": out / "comparison.png"}
    comparison.table.to_csv(files["csv"], index=False)
    files["md"].write_text(markdown_report(comparison))
    plot_comparison(comparison, files["png"])
    comparison.files.update(files)
    return files


def compare(paths: Iterable[str | Path], out: str | Path, sort: str | None = None) -> Comparison:
    """`fashionlab compare`: load the runs, write the three files into `out`."""
    comparison = load_comparison(paths, sort)
    write_comparison(comparison, Path(out))
    return comparison
