"""Secrets kept out of what a run writes: every value shown as `***` in saved configs, checkpoints,
logs, W&B and manifests, while the running process keeps using the real one.

Two kinds of secret: the password of a URL (sweep.storage=postgresql://user:password@host/db) and
every value of `data.cache.storage_options` except the few that are plainly not secret
(`PUBLIC_STORAGE_OPTIONS`: where the store is, not how to get in). A masked value read back (from
a checkpoint, on resume or in evaluate.py) counts as not given: the object-store clients leave it
out and fall back to the environment's credentials (see fashionlab.data.cache.store)."""

from __future__ import annotations

import contextlib
import copy
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

MASK = "***"
#: storage_options keys whose values are shown as they are (everything else is masked).
PUBLIC_STORAGE_OPTIONS = frozenset({"endpoint_url", "region_name", "use_ssl", "verify", "project",
                                    "api_version", "addressing_style"})
#: Where the storage options sit in a run's config.
STORAGE_OPTIONS_PATH = ("data", "cache", "storage_options")


def redact_url(url: str) -> str:
    """`url` with its password, if any, shown as MASK."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return re.sub(r"(://[^/:@]*:)[^@/]*@", rf"\1{re.escape(MASK)}@", url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def url_password(url: str) -> str | None:
    """The password of `url`, if it has one."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password or None
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return None


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return MASK if value not in (None, "") else value


def is_masked(value: Any) -> bool:
    return value == MASK


def storage_secrets(options: Mapping[str, Any] | None) -> list[str]:
    """The secret values of `options` (storage options), longest first (so that a secret that
    contains another is replaced whole)."""
    found = {str(leaf) for key, value in (options or {}).items() if key not in PUBLIC_STORAGE_OPTIONS
             for leaf in _leaves(value) if leaf not in (None, "", MASK) and not isinstance(leaf, bool)}
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def masked_storage_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """`options` with every value but the public ones shown as MASK."""
    return {key: value if key in PUBLIC_STORAGE_OPTIONS else _masked(value)
            for key, value in (options or {}).items()}


def _storage_options(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    node: Any = config
    for key in STORAGE_OPTIONS_PATH:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, Mapping) else None


def config_secrets(config: Mapping[str, Any]) -> list[str]:
    """The secret values of a run's config (a plain dict or a DictConfig)."""
    return storage_secrets(_storage_options(config))


def masked_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a run's plain config with its secrets masked (for checkpoints, W&B, manifests)."""
    options = _storage_options(config)
    if not options:
        return config
    out = copy.deepcopy(config)
    *parents, last = STORAGE_OPTIONS_PATH
    node = out
    for key in parents:
        node = node[key]
    node[last] = masked_storage_options(options)
    return out


def mask_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def scrub_files(paths: Iterable[Path], secrets: Iterable[str]) -> None:
    """Replace every secret in the text files `paths` by MASK (e.g. Hydra's saved configs, which
    Hydra writes before the run starts)."""
    secrets = list(secrets)
    if not secrets:
        return
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text()
        masked = mask_text(text, secrets)
        if masked != text:
            path.write_text(masked)


@contextlib.contextmanager
def masked_argv(secrets: Iterable[str]) -> Iterator[None]:
    """sys.argv with the secrets masked, for the duration (W&B records the command line when a
    run starts; child processes launched afterwards still get the real one)."""
    secrets = list(secrets)
    saved = list(sys.argv)
    sys.argv[:] = [mask_text(arg, secrets) for arg in saved]
    try:
        yield
    finally:
        sys.argv[:] = saved
