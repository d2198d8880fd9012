"""Every option of every config group composes, and the objects it describes instantiate."""

import pytest
import torch
from hydra.utils import instantiate

from fashionlab.training.run import build_callbacks, build_logger, prepare_config

from conftest import CONF, tiny_overrides


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture
def base(fmnist_dir, tmp_path):
    return tiny_overrides(fmnist_dir, tmp_path)


@pytest.mark.parametrize("option", options("backbone"))
def test_backbone_configs(option, compose_cfg, base):
    extra = ["backbone.name=convnext_atto"] if option == "timm" else []
    cfg = prepare_config(compose_cfg([*base, f"backbone={option}", *extra]))
    for key in ("name", "pretrained", "min_input_size"):
        assert cfg.backbone[key] is not None, key
    record = cfg.data.preprocess
    assert record.input_size == cfg.data.image_size
    assert record.interpolation in ("bicubic", "bilinear")
    assert len(record.mean) == len(record.std) == 3


def compose_with(compose_cfg, base: list[str], choice: str):
    """Compose `choice` (e.g. data=csv) with the tiny run's overrides, keeping only the data.*
    ones whose key this data config has (data.root always)."""
    others = [o for o in base if not o.startswith("data.")]
    keys = compose_cfg([*others, choice]).data
    data = [o for o in base if o.startswith("data.") and o.split("=")[0][len("data."):] in keys]
    return compose_cfg([*others, *data, choice])


@pytest.mark.parametrize("option", options("data"))
def test_data_configs(option, compose_cfg, base):
    cfg = prepare_config(compose_with(compose_cfg, base, f"data={option}"))
    assert cfg.data.image_size >= cfg.backbone.min_input_size
    datamodule = instantiate(cfg.data, _recursive_=False)
    assert datamodule.tasks_cfg and cfg.data.get("main_task") in (None, *cfg.data.tasks)
    assert callable(instantiate(cfg.data.transforms.train))
    assert callable(datamodule.eval_transform())


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_configs(option, compose_cfg, base):
    cfg = compose_cfg([*base, f"trainer={option}", "trainer.accelerator=cpu",
                       "trainer.precision=32-true"])
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("option", options("logger"))
def test_logger_configs(option, compose_cfg, base):
    cfg = compose_cfg([o for o in base if not o.startswith("logger=")] + [f"logger={option}"])
    logger = build_logger(cfg)
    assert (logger is False) == (option == "none")


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_configs(option, compose_cfg, base):
    cfg = compose_cfg([*base, f"optimizer={option}"])
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_configs(option, compose_cfg, base):
    cfg = compose_cfg([*base, f"scheduler={option}"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert all(0 < lr <= 1.0 for lr in lrs)
    if option == "cosine_warmup":
        assert lrs[0] < lrs[5] and max(lrs) == pytest.approx(1.0, rel=0.05) and lrs[-1] < 0.05


@pytest.mark.parametrize("option", options("callbacks"))
def test_callback_configs(option, compose_cfg, base):
    cfg = compose_cfg([*base, f"callbacks={option}"])
    callbacks = build_callbacks(cfg, has_logger=True)
    names = {type(c).__name__ for c in callbacks}
    assert {"LinkedLastCheckpoint", "FreezeThenUnfreeze", "ProgressLog"} <= names
    assert ("EarlyStopping" in names) == (option == "early_stopping")


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_configs(option, compose_cfg, base):
    cfg = compose_with(compose_cfg, base, f"experiment={option}")
    prepare_config(cfg)
    assert cfg.data.tasks and cfg.backbone.name
