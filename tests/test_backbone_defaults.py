"""Every backbone out of the box: weights from timm's cache or a download (never a silent random
init, never a hang offline), and a training resolution raised to the backbone's minimum."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants as hf_constants
import pytest
import timm
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import save_file

from fashionlab.errors import ConfigError, PretrainedWeightsNotFoundError
from fashionlab.models import backbones
from fashionlab.models.backbones import create_backbone
from fashionlab.training.run import prepare_config, resolved_config, train

from conftest import CONF, run_script, tiny_overrides

BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
# The headline sweep: `python train.py -m backbone=resnet50,inception_v3,...` with no other override.
SWEEP = ["resnet50", "inception_v3", "efficientnet_b0", "densenet169", "xception", "vgg16"]
# Architectures that cannot run one pixel below their declared minimum.
HARD_MINIMUM = {"inception_v3", "vgg16"}


def backbone_cfg(option: str):
    cfg = OmegaConf.load(CONF / "backbone" / f"{option}.yaml")
    if option == "timm":
        cfg.name = "convnext_atto"
    return cfg


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty torch-hub and Hugging Face caches; any real connection attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to connect: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path


def random_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(t, state[k]) for k, t in model.state_dict().items())


# -- resolution ---------------------------------------------------------------------------------

@pytest.mark.parametrize("option", BACKBONES)
@pytest.mark.slow
def test_min_input_size_runs_forward(option):
    """Each config's min_input_size is an input timm's model accepts (inception_v3 and vgg16 not
    one pixel less)."""
    cfg = backbone_cfg(option)
    model = create_backbone(cfg.name, pretrained=False).eval()
    size = int(cfg.min_input_size)
    with torch.no_grad():
        features = model(torch.zeros(2, 3, size, size))
        assert features.ndim == 2 and features.shape[0] == 2 and torch.isfinite(features).all()
        if option in HARD_MINIMUM:
            with pytest.raises(RuntimeError):
                model(torch.zeros(2, 3, size - 1, size - 1))


@pytest.mark.parametrize("option", BACKBONES)
def test_auto_image_size_is_preferred_raised_to_minimum(option, compose_cfg, fmnist_dir, tmp_path):
    extra = ["backbone.name=convnext_atto"] if option == "timm" else []
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), f"backbone={option}",
                       "backbone.pretrained=false", *extra])
    # Before the run resolves it (a data module built on its own), auto reads as the preferred size.
    assert cfg.data.image_size == cfg.data.preferred_image_size == 36
    prepare_config(cfg)
    expected = max(36, int(cfg.backbone.min_input_size))
    assert cfg.data.image_size == expected
    # Every interpolation sees the resolved size, and so does the config a checkpoint stores.
    eval_tf = instantiate(cfg.data, _recursive_=False).eval_transform()
    for resize in (instantiate(cfg.data.transforms.train).transforms[0], eval_tf.transforms[0]):
        assert (resize.height, resize.width) == (expected, expected)
    assert resolved_config(cfg)["data"]["image_size"] == expected
    assert resolved_config(cfg)["data"]["preprocess"]["input_size"] == expected


@pytest.mark.slow
def test_xception_on_fashion_mnist_trains_at_71px(compose_cfg, fmnist_dir, tmp_path, caplog):
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "backbone=xception",
                       "backbone.pretrained=false", "data.batch_size=4", "trainer.fast_dev_run=true"])
    with caplog.at_level(logging.INFO):
        metrics = train(cfg)
    assert cfg.data.image_size == 71
    assert "data.image_size=71" in caplog.text and "legacy_xception" in caplog.text
    assert 0.0 <= metrics["val/article/acc"] <= 1.0


def test_explicit_image_size(compose_cfg, fmnist_dir, tmp_path):
    base = [*tiny_overrides(fmnist_dir, tmp_path), "backbone=xception", "backbone.pretrained=false"]
    cfg = prepare_config(compose_cfg([*base, "data.image_size=80"]))
    assert cfg.data.image_size == 80
    assert prepare_config(compose_cfg([*base, "data.image_size=null"])).data.image_size == 71
    with pytest.raises(ConfigError, match=r"data\.image_size=10 is below .*71px"):
        prepare_config(compose_cfg([*base, "data.image_size=10"]))
    with pytest.raises(ConfigError, match=r"data\.image_size='abc'"):
        prepare_config(compose_cfg([*base, "data.image_size=abc"]))


def test_file_data_configs_prefer_224(compose_cfg, tmp_path):
    cfg = compose_cfg(["data=csv", f"data.root={tmp_path}", "backbone=vgg16", f"hydra.run.dir={tmp_path}"])
    assert prepare_config(cfg).data.image_size == 224


# -- weights ------------------------------------------------------------------------------------

def test_downloads_missing_weights_by_default(empty_caches, monkeypatch):
    """Not cached: timm's weights are fetched from the hub into its cache (here a fake hub)."""
    state = random_state("resnet18", seed=7)
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        path = Path(hf_constants.HF_HUB_CACHE) / "fake" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))
        return str(path)

    monkeypatch.setattr(backbones, "unreachable", lambda url: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert same_weights(create_backbone("resnet18"), state)
    assert calls == [("timm/resnet18.a1_in1k", "model.safetensors")]


def test_downloads_url_weights_into_torch_hub_cache(empty_caches, monkeypatch):
    """Weights published as a URL (legacy_xception) land in torch hub's checkpoints folder."""
    state = random_state("legacy_xception", seed=8)

    def fake_download(url, dst, *args, **kwargs):
        torch.save(state, dst)

    monkeypatch.setattr(backbones, "unreachable", lambda url: None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = create_backbone("legacy_xception")
    assert same_weights(model, state)
    url = timm.models.get_pretrained_cfg("legacy_xception").url
    assert (Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / os.path.basename(url)).is_file()


def assert_ways_out(message: str) -> None:
    assert "\n" not in message
    for way in ("backbone.weights=", "backbone.pretrained=false", "cache"):
        assert way in message, message


@pytest.mark.parametrize("name", ["resnet18", "legacy_xception"])
def test_offline_mode_stops_with_the_ways_out(name, empty_caches, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsNotFoundError) as info:
        create_backbone(name)
    assert "HF_HUB_OFFLINE" in str(info.value)
    assert_ways_out(str(info.value))


@pytest.mark.parametrize("name", ["resnet18", "legacy_xception"])
def test_no_network_stops_with_the_ways_out(name, empty_caches, monkeypatch):
    def refused(address, timeout=None, *args, **kwargs):
        assert timeout is not None and timeout <= 10, "the probe must not wait long"
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    with pytest.raises(PretrainedWeightsNotFoundError) as info:
        create_backbone(name)
    assert "cannot reach" in str(info.value)
    assert_ways_out(str(info.value))


def test_closed_hub_endpoint_stops_with_the_ways_out(tmp_path, monkeypatch):
    """A real connection attempt, to a closed port on this machine: refused at once, no retries."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(PretrainedWeightsNotFoundError, match=f"cannot reach 127.0.0.1:{port}") as info:
        create_backbone("resnet18")
    assert_ways_out(str(info.value))


def test_cached_weights_need_no_network_even_offline(empty_caches, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    repo = Path(hf_constants.HF_HUB_CACHE) / "models--timm--resnet18.a1_in1k"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    state = random_state("resnet18", seed=9)
    save_file(state, str(repo / "snapshots" / revision / "model.safetensors"))
    assert same_weights(create_backbone("resnet18"), state)


def test_download_can_be_forbidden(empty_caches):
    with pytest.raises(PretrainedWeightsNotFoundError, match="allow_download=false") as info:
        create_backbone("resnet18", allow_download=False)
    assert_ways_out(str(info.value))


@pytest.mark.slow
def test_train_script_offline_is_one_line(fmnist_dir, tmp_path, monkeypatch):
    """train.py with a backbone whose weights are not cached, offline: one line, status 2."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    proc = run_script("train.py", *tiny_overrides(fmnist_dir, tmp_path / "run"), "backbone=resnet50",
                      timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert_ways_out(lines[0])
