"""Backbone factory: name checks, weights from files and caches, clear errors, every named config."""

import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from fashionlab.errors import PretrainedWeightsNotFoundError, UnknownBackboneError
from fashionlab.models.backbones import cached_weights_file, create_backbone
from fashionlab.training.run import train

from conftest import CONF, TINY_BACKBONE, tiny_overrides

# the ImageNet backbones by name (not `timm`, any name; not `test_efficientnet`, the smoke-test one)
NAMED = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml")
               if p.stem not in ("timm", TINY_BACKBONE))


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Point timm's torch-hub and Hugging Face caches at empty folders."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_named_backbones_are_the_six_plus_lite0():
    assert NAMED == ["densenet169", "efficientnet_b0", "efficientnet_lite0", "inception_v3",
                     "resnet50", "vgg16", "xception"]


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownBackboneError, match=r"unknown backbone 'resnet5O'.*resnet50"):
        create_backbone("resnet5O")


def test_missing_pretrained_weights_is_a_clear_error(empty_caches):
    with pytest.raises(PretrainedWeightsNotFoundError) as info:
        create_backbone("resnet18", pretrained=True, allow_download=False)
    message = str(info.value)
    assert "backbone.weights=" in message and "backbone.allow_download=false" in message


def random_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def assert_features_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_weights_from_local_file(tmp_path, empty_caches):
    state = random_state("resnet18", seed=3)
    path = tmp_path / "resnet18.safetensors"
    save_file(state, str(path))
    assert_features_equal(create_backbone("resnet18", weights=str(path)), state)
    with pytest.raises(PretrainedWeightsNotFoundError, match="no such file"):
        create_backbone("resnet18", weights=str(tmp_path / "missing.pth"))


def test_weights_from_torch_hub_cache(empty_caches):
    url = timm.models.get_pretrained_cfg("legacy_xception").url
    target = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / os.path.basename(url)
    target.parent.mkdir(parents=True)
    state = random_state("legacy_xception", seed=4)
    torch.save(state, target)
    assert cached_weights_file("legacy_xception") == target
    model = create_backbone("legacy_xception")
    assert_features_equal(model, {k: v for k, v in state.items() if not k.startswith("fc.")})


def test_weights_from_hugging_face_cache(empty_caches):
    import huggingface_hub.constants as hf_constants

    repo = Path(hf_constants.HF_HUB_CACHE) / "models--timm--resnet18.a1_in1k"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    state = random_state("resnet18", seed=5)
    save_file(state, str(snapshot / "model.safetensors"))
    assert cached_weights_file("resnet18") == snapshot / "model.safetensors"
    assert_features_equal(create_backbone("resnet18"), state)


@pytest.mark.parametrize("backbone", NAMED)
@pytest.mark.slow
def test_fast_dev_run_every_backbone(backbone, compose_cfg, fmnist_dir, tmp_path):
    size = {"inception_v3": 75, "xception": 71}.get(backbone, 32)
    cfg = compose_cfg([
        *tiny_overrides(fmnist_dir, tmp_path), f"backbone={backbone}",
        "backbone.pretrained=false", f"data.image_size={size}", "data.batch_size=4", "data.eval_batch_size=4",
        "trainer.fast_dev_run=true",
    ])
    metrics = train(cfg)
    for stage in ("val", "test"):
        for task in ("article", "category"):
            assert 0.0 <= metrics[f"{stage}/{task}/acc"] <= 1.0
