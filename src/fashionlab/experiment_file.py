"""`experiment=<path to a .yaml file>` on train.py's command line: an experiment file used where
it lies (e.g. a sweep's `outputs/sweeps/<study>/best.yaml`), without copying it into
conf/experiment/.

Hydra finds group options only in `<search path>/experiment/`; the file is copied into a
temporary search-path folder as `experiment/file_<name>.yaml`, and the argument becomes
`experiment=file_<name>` plus `hydra.searchpath=[file://<that folder>]`. The composed config (with the
file's values) is saved in the run's `.hydra/config.yaml` as usual, and the file's path is kept
in the run's overrides as `+experiment_file=<path>`.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fashionlab.errors import ConfigError

PREFIXES = ("experiment=", "+experiment=")


def resolve_experiment_path(args: Sequence[str]) -> list[str]:
    """`args` with an `experiment=<file>.yaml` argument rewritten as described above (others as
    given). ConfigError when the file does not exist."""
    out: list[str] = []
    for arg in args:
        prefix = next((p for p in PREFIXES if arg.startswith(p)), None)
        value = arg[len(prefix):] if prefix else ""
        if not prefix or not value.endswith((".yaml", ".yml")):
            out.append(arg)
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"experiment={value}: no such file")
        folder = Path(tempfile.mkdtemp(prefix="fashionlab-experiment-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        (folder / "experiment").mkdir()
        name = f"file_{path.stem}"  # not the name of an option in conf/experiment/
        shutil.copyfile(path, folder / "experiment" / f"{name}.yaml")
        out += [f"experiment={name}", f"hydra.searchpath=[file://{folder}]",
                f"+experiment_file={path}"]
    return out
