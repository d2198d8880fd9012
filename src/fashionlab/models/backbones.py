"""Backbone factory: a timm model with pooled features and ImageNet weights.

Weights sources, in order: an explicit weights file, a weights package bundled with the project
(BUNDLED_WEIGHTS), timm's local caches (Hugging Face hub cache, torch hub cache), then a download
by timm's own means into those caches (unless `allow_download` is off). Offline (HF_HUB_OFFLINE=1,
or the hub unreachable) the run stops at once with one line naming the ways out: never a silent
random initialisation, never a wait on a dead network.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import socket
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import huggingface_hub
import huggingface_hub.constants as hf_constants
import timm
import timm.data
import torch
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from fashionlab.data.preprocess import Preprocessing, has_record
from fashionlab.errors import ConfigError, PretrainedWeightsNotFoundError, UnknownBackboneError
from fashionlab.models.lite0_weights import PACKAGE as LITE0_PACKAGE
from fashionlab.models.lite0_weights import load_lite0_package_state_dict

log = logging.getLogger(__name__)

# timm model name -> function returning a timm-layout state dict shipped by an installed package.
BUNDLED_WEIGHTS: dict[str, Callable[[], Mapping[str, torch.Tensor]]] = {
    "tf_efficientnet_lite0": load_lite0_package_state_dict,
}
BUNDLED_PACKAGES: dict[str, str] = {"tf_efficientnet_lite0": LITE0_PACKAGE}
# Seconds to wait for the weights host to answer (the connection probe, and each socket read of a
# URL download): a dead network fails within this, a slow but live one keeps downloading.
NETWORK_TIMEOUT_S = 10.0
_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def check_backbone_name(name: str) -> None:
    """Raise UnknownBackboneError with close matches when `name` is not a timm architecture."""
    arch = name.split(".")[0]
    if timm.is_model(arch):
        return
    matches = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
    raise UnknownBackboneError(
        f"unknown backbone {name!r}: not a timm model name (see timm.list_models()).{hint} "
        f"Named configs: conf/backbone/*.yaml; any timm model: backbone=timm backbone.name=<name>."
    )


def _hf_source(cfg: Any) -> tuple[str, str | None, tuple[str, ...]] | None:
    """(repo id, revision, candidate file names) of a pretrained config's Hugging Face weights."""
    if not cfg.hf_hub_id:
        return None
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    filenames = (cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else _HF_FILENAMES
    return repo_id, revision or None, filenames


def _torch_hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlsplit(url).path)


def cached_weights_file(name: str) -> Path | None:
    """A weights file for `name` already in timm's Hugging Face or torch hub cache, if any."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if (hf := _hf_source(cfg)) is not None:
        repo_id, revision, filenames = hf
        for filename in (*filenames, "open_clip_pytorch_model.bin"):
            found = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg.url and _torch_hub_file(cfg.url).is_file():
        return _torch_hub_file(cfg.url)
    return None


def unreachable(url: str) -> str | None:
    """Why `url`'s host (or the proxy for it) takes no connection within NETWORK_TIMEOUT_S, or None."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=NETWORK_TIMEOUT_S).close()
    except OSError as err:
        return f"cannot reach {parts.hostname}:{port} ({err.strerror or err})"
    return None


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _ways_out(name: str, why: str) -> PretrainedWeightsNotFoundError:
    return PretrainedWeightsNotFoundError(
        f"no pretrained weights for backbone {name!r}: {why}. Ways out: "
        f"backbone.weights=/path/to/weights.(pth|safetensors); timm's cache "
        f"({hf_constants.HF_HUB_CACHE} or {Path(torch.hub.get_dir()) / 'checkpoints'}), filled by "
        f"one run with network; backbone.pretrained=false (random initialisation)."
    )


def download_weights(name: str) -> Path:
    """Fetch `name`'s pretrained weights the way timm does, into its cache; one-line error offline."""
    cfg = timm.models.get_pretrained_cfg(name)
    hf = _hf_source(cfg) if cfg is not None else None
    url = cfg.url if cfg is not None else None
    if hf is None and not url:
        raise _ways_out(name, "timm publishes none for this model")
    if hf_constants.HF_HUB_OFFLINE:
        raise _ways_out(name, "none in timm's cache, and downloads are off (HF_HUB_OFFLINE=1)")
    source = f"{hf_constants.ENDPOINT}/{hf[0]}" if hf is not None else str(url)
    if (reason := unreachable(source)) is not None:
        raise _ways_out(name, f"none in timm's cache, and {reason}")
    log.info("backbone %s: downloading pretrained weights from %s", name, source)
    try:
        return _download_hf(*hf) if hf is not None else _download_url(str(url))
    except (OSError, EntryNotFoundError) as err:
        first_line = (str(err).strip() or type(err).__name__).splitlines()[0]
        raise _ways_out(name, f"the download from {source} failed ({first_line})") from err


def _download_hf(repo_id: str, revision: str | None, filenames: tuple[str, ...]) -> Path:
    """The first of `filenames` the repository has, through huggingface_hub (timm's own way)."""
    for filename in filenames[:-1]:
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
        except EntryNotFoundError as err:
            if isinstance(err, LocalEntryNotFoundError):  # no connection, not a missing file
                raise
    return Path(huggingface_hub.hf_hub_download(repo_id, filenames[-1], revision=revision))


def _download_url(url: str) -> Path:
    """`url` into torch hub's checkpoints folder, where timm's URL loader caches it."""
    target = _torch_hub_file(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _socket_timeout(NETWORK_TIMEOUT_S):
        torch.hub.download_url_to_file(url, str(target), progress=True)
    return target


def create_backbone(
    name: str,
    pretrained: bool = True,
    weights: str | None = None,
    allow_download: bool = True,
    drop_rate: float = 0.0,
    **_: Any,
) -> nn.Module:
    """timm model `name` without classifier (num_classes=0): forward returns pooled features.

    The model's `weights_source` attribute says where its weights came from: a file, a bundled
    package, timm's cache, a download into it, or random initialisation."""
    check_backbone_name(name)
    kwargs: dict[str, Any] = {"num_classes": 0, "drop_rate": drop_rate}
    if not pretrained:
        model = timm.create_model(name, pretrained=False, **kwargs)
        model.weights_source = "random initialisation (backbone.pretrained=false)"
        return model
    arch = name.split(".")[0]
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise PretrainedWeightsNotFoundError(f"backbone.weights: no such file: {path}")
        source = f"file {path}"
        overlay: dict[str, Any] = {"file": str(path)}
    elif arch in BUNDLED_WEIGHTS:
        source = f"bundled package {BUNDLED_PACKAGES.get(arch, arch)}"
        overlay = {"state_dict": BUNDLED_WEIGHTS[arch]()}
    elif (cached := cached_weights_file(name)) is not None:
        source = f"timm cache {cached}"
        overlay = {"file": str(cached)}
    elif not allow_download:
        raise _ways_out(name, "none in timm's cache, and backbone.allow_download=false")
    else:
        downloaded = download_weights(name)
        source = f"download into timm cache {downloaded}"
        overlay = {"file": str(downloaded)}
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    model.weights_source = source
    return model


@functools.lru_cache(maxsize=64)
def _resolve_data_config(name: str) -> tuple[tuple[str, Any], ...]:
    check_backbone_name(name)
    pretrained_cfg = timm.models.get_pretrained_cfg(name)
    config = timm.data.resolve_data_config(
        args={"in_chans": 3}, pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else None)
    return tuple(config.items())


def timm_data_config(name: str) -> dict[str, Any]:
    """timm's data config for backbone `name`: timm.data.resolve_data_config on its pretrained
    config (native input_size, interpolation, mean, std, crop). Metadata only: nothing is
    downloaded. The training resolution is the project's own (see resolve_image_size)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in _resolve_data_config(str(name))}


def timm_data_value(name: str, key: str) -> Any:
    """One value of `timm_data_config(name)` (the `fl_timm_data` resolver of conf/data/*.yaml)."""
    config = timm_data_config(name)
    if key not in config:
        raise ConfigError(f"timm's data config has no {key!r} (keys: {', '.join(config)})")
    return config[key]


def resolve_preprocessing(data_cfg: DictConfig, backbone_cfg: DictConfig) -> Preprocessing | None:
    """Fix `data.preprocess` once, as plain values: timm's for the backbone unless overridden,
    at the run's `data.image_size` (resolve that first). None for a config written before the
    record existed (its own `data.transforms.eval` stays in use)."""
    if not has_record(data_cfg):
        log.warning("data.preprocess is missing (a config written before it existed): the eval "
                    "pipeline stays data.transforms.eval")
        return None
    record = Preprocessing.from_config(data_cfg.preprocess, default_size=int(data_cfg.image_size))
    if record.input_size != int(data_cfg.image_size):
        raise ConfigError(f"data.preprocess.input_size={record.input_size} differs from "
                          f"data.image_size={data_cfg.image_size}; set data.image_size only")
    with open_dict(data_cfg):
        data_cfg.preprocess = record.to_config()
    log.info("preprocessing for %s: %dpx %s, mean %s, std %s%s", backbone_cfg.name,
             record.input_size, record.interpolation, list(record.mean), list(record.std),
             ", grey input" if record.grayscale else "")
    return record


def check_image_size(image_size: Any, backbone_cfg: DictConfig) -> None:
    """Refuse a training resolution that is not a whole number or is below what the
    architecture accepts."""
    if isinstance(image_size, bool) or not isinstance(image_size, int):
        raise ConfigError(f"data.image_size={image_size!r} is not a whole number of pixels "
                          f"(or null: auto, the data's preferred size raised to the backbone's minimum)")
    minimum = int(backbone_cfg.get("min_input_size") or 1)
    if image_size < minimum:
        raise ConfigError(
            f"data.image_size={image_size} is below backbone {backbone_cfg.name!r}'s minimum "
            f"input of {minimum}px; set data.image_size>={minimum}"
        )


# data.image_size's default in the data configs: "auto". Without a backbone (a data module built
# on its own) it reads as the preferred size; a training run raises it to the backbone's minimum.
AUTO_IMAGE_SIZE = "${.preferred_image_size}"


def resolve_image_size(data_cfg: DictConfig, backbone_cfg: DictConfig) -> int:
    """Set `data.image_size` when auto (AUTO_IMAGE_SIZE or null): the data's
    `preferred_image_size` raised to the backbone's `min_input_size`; an explicit value is
    checked against that minimum."""
    raw = OmegaConf.to_container(data_cfg, resolve=False).get("image_size")
    if raw is None or raw == AUTO_IMAGE_SIZE:
        preferred = data_cfg.get("preferred_image_size")
        if isinstance(preferred, bool) or not isinstance(preferred, int) or preferred < 1:
            raise ConfigError(f"data.preferred_image_size={preferred!r} must be a whole number of "
                              f"pixels when data.image_size is auto")
        minimum = int(backbone_cfg.get("min_input_size") or 1)
        with open_dict(data_cfg):
            data_cfg.image_size = max(preferred, minimum)
        raised = f", raised to backbone {backbone_cfg.name!r}'s minimum" if minimum > preferred else ""
        log.info("data.image_size=%d (the data's preferred %dpx%s)", data_cfg.image_size,
                 preferred, raised)
    check_image_size(data_cfg.image_size, backbone_cfg)
    return int(data_cfg.image_size)
