"""What a config read from a file (a checkpoint's stored training config, an evaluation folder's
manifest.json) may build, and where a checkpoint may come from.

Checkpoints and evaluation folders are shared between people, so loading one must never run code
it names. `check_targets` resolves a whole config and checks every `_target_` in it against an
allow-list BEFORE anything is built: the name must start with an allowed prefix (checked as a
string, so nothing outside the allowed packages is even imported), and the object it names must
be of the expected kind (a data module, an albumentations transform, an optimizer, ...), which
stops names that reach other code through a module's imports (`torch.optim.sgd.torch.save`).
`safe_instantiate` builds from exactly the checked values. Hydra's own instantiate blocklist
(hydra-core >= 1.3.7) is defence in depth, not the boundary.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fashionlab.errors import CheckpointError, UnsafeConfigError

DOCS = "docs/provenance_safe_loading.md"


def _subclass_of(*names: str) -> Callable[[str, Any], bool]:
    def accepts(_: str, obj: Any) -> bool:
        bases = tuple(_import(name) for name in names)
        return inspect.isclass(obj) and issubclass(obj, bases)

    return accepts


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)


def _function_of(module: str) -> Callable[[str, Any], bool]:
    """A public function defined in `module` itself (not one it imports), named directly."""

    def accepts(target: str, obj: Any) -> bool:
        return (inspect.isfunction(obj) and obj.__module__ == module
                and target == f"{module}.{obj.__name__}" and not obj.__name__.startswith("_"))

    return accepts


def _trainer(_: str, obj: Any) -> bool:
    return obj is _import("lightning.Trainer")


@dataclass(frozen=True)
class Allowed:
    """Targets of one kind: names under `prefixes` whose object `accepts`."""

    kind: str
    prefixes: tuple[str, ...]
    accepts: Callable[[str, Any], bool]

    def covers(self, target: str) -> bool:
        return any(target == p or (p.endswith(".") and target.startswith(p)) for p in self.prefixes)


DATA_MODULES = Allowed("the project's data modules", ("fashionlab.data.",),
                       _subclass_of("lightning.LightningDataModule"))
TRANSFORMS = Allowed("albumentations transforms", ("albumentations.", "fashionlab.data."),
                     _subclass_of("albumentations.BasicTransform", "albumentations.BaseCompose"))
OPTIMIZERS = Allowed("torch.optim optimizers", ("torch.optim.",), _subclass_of("torch.optim.Optimizer"))
SCHEDULES = Allowed("the project's schedules", ("fashionlab.training.schedulers.",),
                    _function_of("fashionlab.training.schedulers"))
SCHEDULERS = Allowed("torch.optim.lr_scheduler schedulers", ("torch.optim.lr_scheduler.",),
                     _subclass_of("torch.optim.lr_scheduler.LRScheduler"))
CALLBACKS = Allowed("Lightning callbacks", ("lightning.pytorch.callbacks.", "fashionlab.training."),
                    _subclass_of("lightning.pytorch.callbacks.Callback"))
LOGGERS = Allowed("Lightning loggers", ("lightning.pytorch.loggers.", "fashionlab.training.wandb_logging."),
                  _subclass_of("lightning.pytorch.loggers.Logger"))
TRAINER = Allowed("lightning.Trainer", ("lightning.Trainer", "lightning.pytorch.Trainer"), _trainer)
METRIC_LOSSES = Allowed("pytorch-metric-learning losses", ("pytorch_metric_learning.losses.",),
                        _subclass_of("pytorch_metric_learning.losses.BaseMetricLossFunction"))
MINERS = Allowed("pytorch-metric-learning miners", ("pytorch_metric_learning.miners.",),
                 _subclass_of("pytorch_metric_learning.miners.BaseMiner"))
TRAINER_PLUGINS = Allowed("the project's trainer plugins", ("fashionlab.training.cluster.",),
                          _function_of("fashionlab.training.cluster"))

#: What a data config (training data, manifest.json's `data`) may build.
DATA = (DATA_MODULES, TRANSFORMS)
#: What the embedding head's loss (conf/embedding) may build: loading a checkpoint builds it.
EMBEDDING = (METRIC_LOSSES, MINERS)
#: What a whole stored training config may name; loading builds only its data, transforms and
#: embedding loss, the rest (optimizer, schedule, trainer, callbacks, logger) is checked but never built.
TRAINING_CONFIG = (DATA_MODULES, TRANSFORMS, OPTIMIZERS, SCHEDULES, SCHEDULERS, CALLBACKS, LOGGERS,
                   TRAINER, TRAINER_PLUGINS, *EMBEDDING)

#: Modules that moved, {old: new}: a config written before the move (a checkpoint, a manifest)
#: names the old module; its targets are read as the new one's before they are checked.
MOVED_MODULES = {
    f"fashionlab.data.{name}": f"fashionlab.data.readers.{name}"
    for name in ("attributes", "celeba_style", "csv_table", "deepfashion", "deepfashion_inshop",
                 "fashion_mnist", "fashion_mnist_attrs", "fashion_products", "hierarchical",
                 "image_folder")
}

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def moved_target(target: Any) -> Any:
    """`target` with a moved module's old name replaced by its new one (others unchanged)."""
    if isinstance(target, str):
        module, _, name = target.rpartition(".")
        if module in MOVED_MODULES:
            return f"{MOVED_MODULES[module]}.{name}"
    return target


def _renamed(node: Any) -> Any:
    """Plain containers with every `_target_` passed through `moved_target` (in place)."""
    if isinstance(node, dict):
        if "_target_" in node:
            node["_target_"] = moved_target(node["_target_"])
        for value in node.values():
            _renamed(value)
    elif isinstance(node, list):
        for value in node:
            _renamed(value)
    return node


def _join(key: str, part: str) -> str:
    return f"{key}.{part}" if key else part


def _walk(node: Any, key: str) -> Iterator[tuple[str, Any, bool]]:
    """(dotted key, value, is_target) for every `_target_` and every string left with `${`."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield _join(key, "_target_"), node["_target_"], True
        for k, v in node.items():
            if k != "_target_":
                yield from _walk(v, _join(key, str(k)))
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for i, v in enumerate(node):
            yield from _walk(v, f"{key}[{i}]")
    elif isinstance(node, str) and "${" in node:
        yield key, node, False


def _problem(target: Any, allowed: Sequence[Allowed]) -> str | None:
    """Why `target` may not be built: "" when no allowed prefix covers it; None when it may."""
    if not isinstance(target, str) or not _DOTTED.match(target):
        return "not a dotted name"
    rules = [rule for rule in allowed if rule.covers(target)]
    if not rules:
        return ""
    from hydra._internal.utils import _locate

    try:
        obj = _locate(target)
    except Exception as exc:
        return f"cannot be imported: {type(exc).__name__}"
    if not any(rule.accepts(target, obj) for rule in rules):
        return f"not one of {' / '.join(rule.kind for rule in rules)}"
    return None


def _plain(cfg: Any, where: str, key: str) -> Any:
    """`cfg` as plain resolved containers (interpolations and resolvers evaluated)."""
    try:
        node = cfg if isinstance(cfg, DictConfig | ListConfig) else OmegaConf.create(cfg)
        return OmegaConf.to_container(node, resolve=True)
    except Exception as exc:
        raise UnsafeConfigError(f"{where}: {key or 'config'} cannot be read as a config "
                                f"({type(exc).__name__}: {exc})".replace("\n", " ")) from None


def allowed_text(allowed: Sequence[Allowed] = TRAINING_CONFIG) -> str:
    """The kinds a config may name, for messages."""
    return ", ".join(rule.kind for rule in allowed)


def check_targets(cfg: Any, where: str, allowed: Sequence[Allowed] = TRAINING_CONFIG,
                  key: str = "") -> Any:
    """Resolve `cfg` (a config read from `where`; `key`: its dotted key in that file) and check
    every `_target_` in it; returns the resolved plain containers. Raises UnsafeConfigError
    naming every offending key and target, before anything is built."""
    plain = _renamed(_plain(cfg, where, key))
    problems = []
    for path, value, is_target in _walk(plain, key):
        if not is_target:
            problems.append(f"{path} = {value!r} still holds an interpolation after resolving")
        elif (why := _problem(value, allowed)) is not None:
            problems.append(f"{path} = {value!r}" + (f" ({why})" if why else ""))
    if problems:
        raise UnsafeConfigError(
            f"{where}: {', '.join(problems)}: not allowed, nothing was built; a config read from a "
            f"file may only name {allowed_text(allowed)} (see {DOCS})")
    return plain


def safe_instantiate(cfg: Any, where: str, allowed: Sequence[Allowed] = TRAINING_CONFIG,
                     key: str = "", **kwargs: Any) -> Any:
    """hydra.utils.instantiate of `cfg` after `check_targets`, from exactly the checked values."""
    from hydra.utils import instantiate

    return instantiate(OmegaConf.create(check_targets(cfg, where, allowed, key)), **kwargs)


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def require_local_path(path: str | Path, key: str = "checkpoint") -> Path:
    """`path` as a Path; a URL (any `scheme://`) or a Lightning registry name is refused with
    CheckpointError: checkpoints are read from local files only, never fetched."""
    text = str(path)
    if _SCHEME.match(text) or text.lower() == "registry" or text.lower().startswith("registry:"):
        raise CheckpointError(
            f"{key}={text}: a checkpoint must be a local file; URLs and model registries are not "
            f"fetched (download the file, check where it comes from, and pass its path)")
    return Path(text)


def check_resume_path(value: str | Path | None, key: str = "ckpt_path") -> None:
    """A training resume path: None, Lightning's local keywords `last` / `hpc`, or a local path."""
    if value is not None and str(value) not in ("last", "hpc"):
        require_local_path(value, key)
