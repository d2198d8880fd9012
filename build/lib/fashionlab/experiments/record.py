"""`fashionlab record`: one folder per experiment under experiments/, its README.md written from the
runs (commands, commit, hardware, data fingerprint, result table, figures), never typed by hand."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fashionlab.errors import ConfigError
from fashionlab.experiments.compare import (
    Comparison,
    load_comparison,
    markdown_table,
    run_listing,
    write_comparison,
)
from fashionlab.experiments.runs import METRICS_FILE, Run
from fashionlab.provenance import environment_info, git_info

FIGURE_MAX_BYTES = 2_000_000
EVAL_FIGURES = ("confusion_*.png", "retrieval_examples.png")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _yaml_list(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    loaded = OmegaConf.load(path)
    return [str(o) for o in loaded] if OmegaConf.is_list(loaded) else None


def folder_command(folder: Path) -> str | None:
    """The command that made a multirun or sweep folder, from what Hydra / sweep.py saved in it."""
    if (folder / "multirun.yaml").is_file():
        task = OmegaConf.select(OmegaConf.load(folder / "multirun.yaml"), "hydra.overrides.task")
        return shlex.join(["python", "train.py", "-m", *[str(o) for o in task or []]])
    sweep_args = _yaml_list(folder / ".hydra" / "overrides.yaml")
    train_args = _yaml_list(folder / "train_overrides.yaml")
    if train_args is not None or (folder / "study.db").is_file():
        return shlex.join(["python", "sweep.py", *(sweep_args or []), *(train_args or [])])
    return None


def run_commands(given: Sequence[Path], runs: Sequence[Run]) -> list[str]:
    """Commands reconstructed from the folders: `python train.py -m ...` for a multirun folder,
    `python sweep.py ...` for a sweep folder, `python train.py <overrides>` for a single run, and
    `python evaluate.py <overrides>` for each run's newest evaluation."""
    commands: list[str] = []
    covered: set[Path] = set()
    for folder in (Path(g).expanduser().resolve() for g in given):
        if (folder / METRICS_FILE).is_file():
            continue
        command = folder_command(folder)
        if command:
            commands.append(command)
            covered.update(r.path for r in runs if folder in r.path.parents)
    for run in runs:
        if run.path not in covered:
            commands.append(shlex.join(["python", "train.py", *run.overrides]))
    for run in runs:
        if run.eval_dir is not None:
            commands.append(shlex.join(["python", "evaluate.py", *run.eval_overrides]))
    return list(dict.fromkeys(commands))


def _grouped(values: Iterable[tuple[str, Any]]) -> dict[str, list[str]]:
    """{json of a value: labels of the runs that have it}, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for label, value in values:
        groups.setdefault(json.dumps(value, sort_keys=True), []).append(label)
    return groups


def code_section(comparison: Comparison, repo_dir: Path) -> list[str]:
    """Commit (and dirty flag) of the repository at recording and of each run's training."""
    here = git_info(repo_dir)
    if here["git_commit"] is None:  # experiments/ outside a checkout: the code in use instead
        here = git_info(Path(__file__).resolve().parents[3])
    dirty = " (uncommitted changes)" if here["git_dirty"] else ""
    lines = ["## Code", "", f"- recorded at commit `{here['git_commit']}`{dirty}"
             if here["git_commit"] else "- recorded outside a git checkout"]
    labels = list(comparison.table["run"])
    trained = _grouped((label, [run.metrics.get("git_commit"), run.metrics.get("git_dirty")])
                       for label, run in zip(labels, comparison.runs, strict=True))
    for key, names in trained.items():
        commit, dirty = json.loads(key)
        state = " (uncommitted changes)" if dirty else ""
        which = "all runs" if len(names) == len(labels) else ", ".join(f"`{n}`" for n in names)
        lines.append(f"- trained at commit `{commit}`{state}: {which}")
    return [*lines, ""]


def hardware_section(comparison: Comparison) -> list[str]:
    labels = list(comparison.table["run"])
    envs = _grouped((label, {k.removeprefix("env_"): v for k, v in run.metrics.items()
                             if k.startswith("env_")} or None)
                    for label, run in zip(labels, comparison.runs, strict=True))
    lines = ["## Hardware", ""]
    for key, names in envs.items():
        env = json.loads(key)
        if env is None:
            env = environment_info()
            where = "this machine, at recording (the runs' metrics.json do not record theirs)"
        else:
            where = "all runs" if len(names) == len(labels) else ", ".join(f"`{n}`" for n in names)
        lines += [f"Trained on ({where}):", "",
                  f"- CPU: {env.get('cpu')}, {env.get('cpu_cores')} cores, {env.get('ram_gb')} GiB RAM",
                  f"- GPU: {env.get('gpu') or 'none'}",
                  f"- torch {env.get('torch_version')}, timm {env.get('timm_version')}, "
                  f"lightning {env.get('lightning_version')}, Python {env.get('python_version')}",
                  f"- {env.get('platform')}", ""]
    return lines


def data_section(comparison: Comparison) -> list[str]:
    labels = list(comparison.table["run"])
    groups = _grouped((label, [run.metrics.get("data_fingerprint"),
                               {k.removeprefix("data_num_"): v for k, v in sorted(run.metrics.items())
                                if k.startswith("data_num_")}])
                      for label, run in zip(labels, comparison.runs, strict=True))
    lines = ["## Data", ""]
    for key, names in groups.items():
        fingerprint, sizes = json.loads(key)
        which = "all runs" if len(names) == len(labels) else ", ".join(f"`{n}`" for n in names)
        counts = ", ".join(f"{split} {n}" for split, n in sizes.items())
        lines.append(f"- fingerprint `{fingerprint}` ({counts}): {which}")
    return [*lines, ""]


def copy_figures(comparison: Comparison, given: Sequence[Path], out: Path) -> list[Path]:
    """Small PNGs: the best run's evaluation figures and the plots of sweep folders (no checkpoints)."""
    sources: list[tuple[Path, str]] = []
    best = comparison.best
    if best.eval_dir is not None:
        sources += [(p, f"best_{p.name}") for pattern in EVAL_FIGURES
                    for p in sorted(best.eval_dir.glob(pattern))]
    for folder in (Path(g).expanduser() for g in given):
        sources += [(p, f"{folder.name}_{p.name}") for p in sorted((folder / "plots").glob("*.png"))]
    copied = []
    for source, name in sources:
        if source.is_file() and source.stat().st_size <= FIGURE_MAX_BYTES:
            (out / "figures").mkdir(parents=True, exist_ok=True)
            copied.append(Path(shutil.copyfile(source, out / "figures" / name)))
    return copied


SWEEP_FILES = ("best.yaml", "trials.csv")


def copy_sweep_files(given: Sequence[Path], out: Path) -> list[str]:
    """best.yaml and trials.csv of each sweep folder given (as `<sweep>_best.yaml`, ...), and the
    README lines that describe them: trial states and the best trial."""
    import pandas as pd

    lines: list[str] = []
    for folder in (Path(g).expanduser() for g in given):
        if not (folder / "trials.csv").is_file():
            continue
        copied = []
        for file in SWEEP_FILES:
            if (folder / file).is_file():
                copied.append(Path(shutil.copyfile(folder / file, out / f"{folder.name}_{file}")))
        trials = pd.read_csv(folder / "trials.csv")
        states = trials["state"].value_counts().to_dict() if "state" in trials else {}
        lines += [f"### Sweep `{folder.name}`", "",
                  f"- {len(trials)} trials: " + ", ".join(f"{n} {s.lower()}" for s, n in states.items()),
                  *[f"- [{p.name}]({p.name})" for p in copied], ""]
        best_yaml = folder / "best.yaml"
        if best_yaml.is_file():
            lines += ["Best trial (`best.yaml`):", "", "```yaml", best_yaml.read_text().strip(), "```", ""]
    return ["## Sweeps", "", *lines] if lines else []


def readme(name: str, title: str | None, comparison: Comparison, given_commands: Sequence[str],
           commands: Sequence[str], argv: Sequence[str], repo_dir: Path, figures: Sequence[Path],
           notes: str | None, sweep_lines: Sequence[str] = ()) -> str:
    """The experiment's README.md."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {title or name}", "",
             f"Written by `{shlex.join(['fashionlab', 'record', *argv])}` on {when}; "
             "do not edit by hand, re-run the command.", ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    lines += ["## Commands", "", "```bash"]
    if given_commands:
        lines += ["# as run (given to fashionlab record)", *given_commands]
    lines += ["# reconstructed from the run folders", *commands, "```", ""]
    lines += code_section(comparison, repo_dir)
    lines += hardware_section(comparison)
    lines += data_section(comparison)
    direction = "highest" if comparison.mode == "max" else "lowest"
    lines += ["## Results", ""]
    if comparison.monitor:
        lines += [f"Sorted by `{comparison.monitor}` ({direction} first); leading columns: the config keys "
                  "that differ between the runs. All numbers: comparison.csv.", ""]
    lines += [markdown_table(comparison), "", "![comparison](comparison.png)", ""]
    lines += sweep_lines
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{f.stem}](figures/{f.name})" for f in figures]
        lines.append("")
    lines += ["## Runs", "", *run_listing(comparison)]
    return "\n".join(lines) + "\n"


def record(name: str, runs: Sequence[str | Path], commands: Sequence[str] = (), title: str | None = None,
           notes_file: str | Path | None = None, root: str | Path = "experiments", force: bool = False,
           argv: Sequence[str] = (), sort: str | None = None) -> Path:
    """Write `<root>/<name>/` (README.md, comparison.csv/.md/.png, figures/); returns the folder."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"experiment name {name!r}: use letters, digits, '.', '_' and '-' only")
    out = Path(root) / name
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} already exists: choose another name or pass --force to rewrite it")
    notes = None
    if notes_file is not None:
        try:
            notes = Path(notes_file).read_text()
        except OSError as error:
            raise ConfigError(f"--notes-file {notes_file}: {error.strerror or error}") from error
    given = [Path(r) for r in runs]
    comparison = load_comparison(given, sort)
    if out.exists():
        shutil.rmtree(out / "figures", ignore_errors=True)
    write_comparison(comparison, out)
    figures = copy_figures(comparison, given, out)
    sweep_lines = copy_sweep_files(given, out)
    text = readme(name, title, comparison, commands, run_commands(given, comparison.runs), argv,
                  out.resolve().parent, figures, notes, sweep_lines)
    (out / "README.md").write_text(text)
    return out
