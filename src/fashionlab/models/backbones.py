"""Backbone factory: a timm model with pooled features and ImageNet weights from a local source.

Weights are never fetched from a hub unless `allow_download` is set. Sources, in order:
an explicit weights file, a weights package bundled with the project (BUNDLED_WEIGHTS),
timm's local caches (Hugging Face hub cache, torch hub cache).
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from fashionlab.errors import ConfigError, PretrainedWeightsNotFoundError, UnknownBackboneError
from fashionlab.models.lite0_weights import load_lite0_package_state_dict

log = logging.getLogger(__name__)

# timm model name -> function returning a timm-layout state dict shipped by an installed package.
BUNDLED_WEIGHTS: dict[str, Callable[[], Mapping[str, torch.Tensor]]] = {
    "tf_efficientnet_lite0": load_lite0_package_state_dict,
}


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


def cached_weights_file(name: str) -> Path | None:
    """A weights file for `name` already in timm's Hugging Face or torch hub cache, if any."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo_id, filename, revision=revision or None)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg.url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if candidate.is_file():
            return candidate
    return None


def create_backbone(
    name: str,
    pretrained: bool = True,
    weights: str | None = None,
    allow_download: bool = False,
    drop_rate: float = 0.0,
    **_: Any,
) -> nn.Module:
    """timm model `name` without classifier (num_classes=0): forward returns pooled features."""
    check_backbone_name(name)
    kwargs: dict[str, Any] = {"num_classes": 0, "drop_rate": drop_rate}
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    arch = name.split(".")[0]
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise PretrainedWeightsNotFoundError(f"backbone.weights: no such file: {path}")
        log.info("backbone %s: weights from %s", name, path)
        overlay: dict[str, Any] = {"file": str(path)}
    elif arch in BUNDLED_WEIGHTS:
        log.info("backbone %s: weights from bundled package", name)
        overlay = {"state_dict": BUNDLED_WEIGHTS[arch]()}
    elif (cached := cached_weights_file(name)) is not None:
        log.info("backbone %s: weights from cache %s", name, cached)
        overlay = {"file": str(cached)}
    elif allow_download:
        log.info("backbone %s: downloading weights with timm", name)
        return timm.create_model(name, pretrained=True, **kwargs)
    else:
        raise PretrainedWeightsNotFoundError(
            f"no pretrained weights found for backbone {name!r}: not bundled, not in timm's "
            f"cache ({Path(torch.hub.get_dir()) / 'checkpoints'} or the Hugging Face cache). "
            f"Use one of: backbone.weights=/path/to/weights.(pth|safetensors), "
            f"backbone.allow_download=true (network), or backbone.pretrained=false "
            f"(random initialisation)."
        )
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def resolve_backbone_config(backbone_cfg: DictConfig) -> DictConfig:
    """Fill input_size, mean, std and interpolation left null from timm's pretrained config."""
    check_backbone_name(backbone_cfg.name)
    pretrained_cfg = timm.models.get_pretrained_cfg(backbone_cfg.name)
    defaults = {
        "input_size": pretrained_cfg.input_size[-1] if pretrained_cfg else 224,
        "mean": list(pretrained_cfg.mean) if pretrained_cfg else [0.485, 0.456, 0.406],
        "std": list(pretrained_cfg.std) if pretrained_cfg else [0.229, 0.224, 0.225],
        "interpolation": pretrained_cfg.interpolation if pretrained_cfg else "bicubic",
    }
    with open_dict(backbone_cfg):
        for key, value in defaults.items():
            if backbone_cfg.get(key) is None:
                backbone_cfg[key] = value
            elif key in ("mean", "std") and pretrained_cfg is not None and [
                round(float(v), 4) for v in backbone_cfg[key]
            ] != [round(float(v), 4) for v in value]:
                log.warning(
                    "backbone.%s=%s differs from timm's %s for %s",
                    key, list(backbone_cfg[key]), value, backbone_cfg.name,
                )
    return backbone_cfg


def check_image_size(image_size: int, backbone_cfg: DictConfig) -> None:
    """Refuse a training resolution below what the architecture accepts."""
    minimum = int(backbone_cfg.get("min_input_size") or 1)
    if image_size < minimum:
        raise ConfigError(
            f"data.image_size={image_size} is below backbone {backbone_cfg.name!r}'s minimum "
            f"input of {minimum}px; set data.image_size>={minimum}"
        )
