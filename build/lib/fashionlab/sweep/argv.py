"""sweep.py's command line: sweep-config arguments for Hydra, every other override for the trials.

`python sweep.py search_space=lr data=fashion_products trainer.max_epochs=3 sweep.n_trials=50`:
`search_space=lr` and `sweep.n_trials=50` configure the sweep; `data=fashion_products` and
`trainer.max_epochs=3` are train overrides applied to every trial. `seed` and `paths.*` belong to
both configs and go to both.
"""

from __future__ import annotations

from collections.abc import Sequence

from fashionlab.errors import ConfigError

# Top-level keys of conf/sweep.yaml (and Hydra's own): overrides of these configure the sweep.
SWEEP_KEYS = frozenset({"sweep", "search_space", "hydra", "seed", "paths"})
# Keys of the sweep config that the trials' train config has too: given to both.
SHARED_KEYS = frozenset({"seed", "paths"})
# Hydra flags followed by a value (also accepted as --flag=value).
FLAGS_WITH_VALUE = frozenset({"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                              "--cfg", "-c", "--package", "-p", "--experimental-rerun"})
# --info takes an optional value, one of these.
INFO_FLAGS = frozenset({"--info", "-i"})
INFO_VALUES = frozenset({"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"})
REMOVED = ("sweep.base_overrides", "sweep.train_overrides")


def override_key(arg: str) -> str:
    """The config key of an override: `+a.b=1`, `++a.b=1`, `~a.b` and `hydra/launcher=x` give `a.b`,
    `a.b` and `hydra/launcher`."""
    key = arg.split("=", 1)[0].lstrip("~+")
    return key.split("@", 1)[0]


def top_key(arg: str) -> str:
    return override_key(arg).replace("/", ".").split(".", 1)[0]


def split_argv(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(arguments for Hydra's sweep config, train overrides for every trial), in their given order.

    Flags (`--help`, `-m`, `--cfg job`, ...) and overrides of sweep.yaml's keys go to Hydra; every
    other `key=value` (or `~key`) override is a train override. `seed=` and `paths.*=` go to both.
    """
    sweep: list[str] = []
    train: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("-"):
            sweep.append(arg)
            if "=" not in arg and rest and (
                    arg in FLAGS_WITH_VALUE or (arg in INFO_FLAGS and rest[0] in INFO_VALUES)):
                sweep.append(rest.pop(0))
            continue
        key = override_key(arg)
        if key in REMOVED:
            raise ConfigError(
                f"{key} is gone: give train overrides directly on sweep.py's command line, e.g. "
                f"`python sweep.py search_space=lr data=fashion_mnist trainer.max_epochs=3 logger=csv`")
        if "=" not in arg and not arg.startswith("~"):
            sweep.append(arg)  # not an override: Hydra reports it
        elif top_key(arg) in SWEEP_KEYS:
            sweep.append(arg)
            if top_key(arg) in SHARED_KEYS and key != "paths.output_dir":
                train.append(arg)
        else:
            train.append(arg)
    return sweep, train


def hide_storage_password(args: Sequence[str]) -> tuple[list[str], str | None]:
    """(`args` with the password of `sweep.storage=URL` shown as `***`, the URL with it or None).

    Hydra writes the command line into the sweep folder (.hydra/overrides.yaml, hydra.yaml,
    config.yaml): sweep.py gives Hydra the hidden URL and puts the real one into the config after.
    """
    from fashionlab.sweep.study import redact

    hidden, url = [], None
    for arg in args:
        if "=" in arg and override_key(arg) == "sweep.storage":
            prefix, value = arg.split("=", 1)
            if redact(value) != value:
                quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
                url = value[1:-1] if quoted else value
                arg = f"{prefix}={redact(value)}"
        hidden.append(arg)
    return hidden, url
