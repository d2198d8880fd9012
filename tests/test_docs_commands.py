"""The manual cannot drift from the configs: every `python train.py` / `evaluate.py` / `sweep.py`
command line and every `key=value` override written in README.md and docs/*.md composes (Hydra,
in-process), and every `data.balance.*` key named there exists. Commands with placeholders
(`<run>`, `...`) and the pages' deliberate error examples are left out."""

from __future__ import annotations

import re
import shlex
from functools import cache
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from fashionlab.sweep.argv import override_key, split_argv

from conftest import CONF, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = {"train.py": "train", "evaluate.py": "evaluate", "sweep.py": "sweep"}
# Commands shown on purpose as what a mistake prints (docs/training.md's error examples).
DELIBERATE_ERRORS = ("backbone=nosuch", "trainer.nosuch=1", "search_space=nosuch", "data=fashion_nope")
# <run>, ..., $VAR, and a choice of forms such as file.(pth|safetensors)
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|…|\$\{?[A-Z_]+|\([^)]*\|[^)]*\)")
SHELL = (">", "2>", "|", "&", ";", "<")
COMMAND = re.compile(r"python (train|evaluate|sweep)\.py\b([^`\n|]*)")
INLINE = re.compile(r"`([^`\n]+)`")
# A standalone override: a dotted lower-case key (or group) = value.
OVERRIDE = re.compile(r"^\+{0,2}[a-z_][a-z0-9_]*(?:[./][a-z0-9_]+)*=\S+$")
# Configs a standalone override may belong to, by its first key: the train config with each
# data option (data.balance, data.crop, ... exist only in some), trainer=slurm, evaluate, sweep.
DATA_OPTIONS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))


def _lines(text: str) -> list[str]:
    """The page's lines with shell continuations (`\\` at the end) joined."""
    return text.replace("\\\n", " ").splitlines()


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script, arguments) of every command line in the manual without placeholders."""
    found = []
    for page in PAGES:
        for number, line in enumerate(_lines(page.read_text()), 1):
            for match in COMMAND.finditer(line):
                args = match.group(2).split("  #")[0].split(" # ")[0].strip().rstrip("\"'")
                if PLACEHOLDER.search(args) or any(e in args for e in DELIBERATE_ERRORS):
                    continue
                try:
                    words = shlex.split(args)
                except ValueError:
                    continue
                shell = next((i for i, w in enumerate(words) if w.startswith(SHELL)), len(words))
                words = words[:shell]  # the command, without a redirection or pipe after it
                where = f"{page.relative_to(ROOT)}:{number}"
                found.append((where, f"{match.group(1)}.py", words))
    return found


def documented_overrides() -> list[tuple[str, str]]:
    """(where, override) of every inline `key=value` outside a command line."""
    found = []
    for page in PAGES:
        for number, line in enumerate(_lines(page.read_text()), 1):
            for span in INLINE.findall(line):
                span = span.strip()
                if "python " in span or PLACEHOLDER.search(span) or not OVERRIDE.match(span):
                    continue
                if any(e in span for e in DELIBERATE_ERRORS):
                    continue
                found.append((f"{page.relative_to(ROOT)}:{number}", span))
    return found


@cache
def composed(config: str, groups: tuple[str, ...]) -> Any:
    """The config composed with these group choices (cached: the checks below share them)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose(config, overrides=list(groups))
    finally:
        GlobalHydra.instance().clear()


def has_key(cfg: Any, key: str) -> bool:
    """Whether the dotted key is in the config (whatever its value, ??? and null included)."""
    node = cfg
    for part in key.split("."):
        # (keys(): `in` is False for a ??? value)
        if not isinstance(node, DictConfig) or part not in list(node.keys()):
            return False
        node = node._get_node(part)
    return True


def is_group(override: str) -> bool:
    key = override_key(override)
    return "/" in key or ("." not in key and (CONF / key).is_dir())


def check(config: str, overrides: list[str]) -> str | None:
    """None when `overrides` compose against `config` (group choices composed by Hydra; each
    value's key must exist, a `+key` must not, as Hydra requires), else the error."""
    try:
        runs = expand(overrides)
    except Exception as err:
        return f"unparsable: {err}"
    for run in runs:
        groups = tuple(o for o in run if is_group(o))
        try:
            cfg = composed(config, groups)
        except Exception as err:  # any composition error is the finding
            return f"{type(err).__name__}: {str(err).splitlines()[0]}"
        for override in (o for o in run if not is_group(o)):
            key = override_key(override)
            if override.startswith("++") or key.startswith("hydra."):  # Hydra checks its own
                continue
            exists = has_key(cfg, key)
            if override.startswith("+") and exists:
                return f"{override}: {key} is already in the config (drop the +)"
            if not override.startswith("+") and not exists:
                return f"{override}: no key {key} in config {config} with {' '.join(groups)}"
    return None


def expand(overrides: list[str]) -> list[list[str]]:
    """A multirun's overrides as single runs: each swept value once (the others at their first)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    firsts = [o.input_line if not o.is_sweep_override() else
              f"{o.get_key_element()}={next(o.sweep_string_iterator())}" for o in parsed]
    runs = [firsts]
    for i, o in enumerate(parsed):
        if o.is_sweep_override() and is_group(o.input_line):
            runs += [[*firsts[:i], f"{o.get_key_element()}={v}", *firsts[i + 1:]]
                     for v in list(o.sweep_string_iterator())[1:]]
    return runs


def contexts(override: str) -> list[tuple[str, list[str]]]:
    """The configs a standalone override may be meant for, by its first key (none: not a key of
    any config, e.g. a Python keyword argument quoted in the text)."""
    root = override_key(override).replace("/", ".").split(".")[0]
    found = []
    if root in composed("train", ()):
        found.append(("train", []))
        if root == "data":
            found += [("train", [f"data={d}"]) for d in DATA_OPTIONS]
        if root == "trainer":
            found.append(("train", ["trainer=slurm"]))
    if root in composed("evaluate", ("ckpt_path=x.ckpt",)):
        found.append(("evaluate", ["ckpt_path=x.ckpt"]))
    if root in composed("sweep", ()):
        found.append(("sweep", []))
    return found


def hydra_args(words: list[str]) -> list[str]:
    """The overrides among a command's words (Hydra's flags and their values left out)."""
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--cfg", "-c", "--package", "-p", "--info", "-i"):
            skip = word not in ("--info", "-i")
        elif not word.startswith("-"):
            out.append(word)
    return out


COMMANDS = documented_commands()
OVERRIDES = documented_overrides()


def test_the_manual_has_commands_and_overrides_to_check():
    assert len(COMMANDS) > 60 and len(OVERRIDES) > 60


@pytest.mark.parametrize(("where", "script", "words"), COMMANDS,
                         ids=[f"{w} {' '.join(a)}"[:90] for w, _, a in COMMANDS])
def test_documented_command_composes(where, script, words):
    overrides = hydra_args(words)
    if script == "sweep.py":
        sweep_args, train_args = split_argv(overrides)
        checks = [("sweep", sweep_args), ("train", train_args)]
    else:
        checks = [(SCRIPTS[script], overrides)]
    for config, args in checks:
        error = check(config, args)
        assert error is None, f"{where}: python {script} {' '.join(words)}: {error}"


@pytest.mark.parametrize(("where", "override"), OVERRIDES, ids=[f"{w} {o}"[:90] for w, o in OVERRIDES])
def test_documented_override_composes(where, override):
    errors = []
    for config, base in contexts(override):
        error = check(config, [*base, override])
        if error is None:
            return
        errors.append(f"{config} {' '.join(base)}: {error}")
    if errors:
        pytest.fail(f"{where}: `{override}` composes against no config: {errors[0]}")


@cache
def balance_keys() -> set[str]:
    cfg = composed("train", ("data=image_folder",))
    return set(OmegaConf.to_container(cfg.data.balance, resolve=False))


def test_documented_balance_keys_exist():
    """`data.balance.<key>` named anywhere, and the keys of docs/datasets.md's balance table."""
    # (data_tables.md's paragraph on the older keys, still read from old checkpoints, aside)
    texts = {p: re.sub(r"Older keys.*?\n\n", "", p.read_text(), flags=re.S) for p in PAGES}
    named = [(f"{p.relative_to(ROOT)}", m) for p, text in texts.items()
             for m in re.findall(r"data\.balance\.([a-z_]+)", text)]
    table = re.search(r"\| key \| default \|[^\n]*\n(?:\|[^\n]*\n)+",
                      (ROOT / "docs" / "datasets.md").read_text()[
                          (ROOT / "docs" / "datasets.md").read_text().find("## Balancing"):])
    if table:
        named += [("docs/datasets.md balance table", k)
                  for k in re.findall(r"^\| `([a-z_]+)` \|", table.group(0), re.M)]
    unknown = [(where, key) for where, key in named if key not in balance_keys()]
    assert not unknown, f"data.balance keys that do not exist: {unknown}"
