"""Training options of the best-classifier recipe: soft-target loss, Mixup/CutMix of all tasks,
random erasing and shifts, warm-up in steps or epochs, EMA of the weights, the named experiment."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy

from fashionlab.errors import ConfigError
from fashionlab.models.losses import MultiTaskLoss
from fashionlab.models.mixing import BatchMixer
from fashionlab.tasks import TaskSpec
from fashionlab.training.run import train
from fashionlab.training.schedulers import cosine_with_warmup

from conftest import tiny_overrides

ARTICLE = TaskSpec("article", "multiclass", tuple("abcdefghij"))
PARTS = TaskSpec("parts", "multilabel", ("x", "y", "z"))


def test_soft_targets_match_timm_and_hard_labels():
    torch.manual_seed(0)
    logits = {"article": torch.randn(6, 10)}
    labels = torch.tensor([0, 3, 3, 9, 1, 2])
    loss = MultiTaskLoss([ARTICLE], label_smoothing=0.1)
    # one-hot soft targets give the hard-label loss (same smoothing)
    hard, _ = loss(logits, {"article": labels})
    soft, _ = loss(logits, {"article": F.one_hot(labels, 10).float()})
    assert soft.item() == pytest.approx(hard.item(), abs=1e-6)
    # mixed targets: timm's soft-target cross-entropy on timm's smoothed mixed targets
    mixed = mixup_target(labels, 10, lam=0.7, smoothing=0.0)
    expected = SoftTargetCrossEntropy()(logits["article"], mixup_target(labels, 10, 0.7, smoothing=0.1))
    assert loss(logits, {"article": mixed})[0].item() == pytest.approx(expected.item(), abs=1e-6)
    # rows of -1 (unknown) do not count
    unknown = torch.cat([mixed[:4], -torch.ones(2, 10)])
    expected = SoftTargetCrossEntropy()(logits["article"][:4],
                                        mixup_target(labels, 10, 0.7, smoothing=0.1)[:4])
    assert loss(logits, {"article": unknown})[0].item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("options", [
    {"mixup_alpha": 0.4},
    {"cutmix_alpha": 1.0},
    {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mode": "elem"},
])
def test_mixer_matches_timm_for_every_task(options):
    torch.manual_seed(0)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    parts = torch.randint(0, 2, (8, 3))
    np.random.seed(0)
    mixed_images, soft = BatchMixer([ARTICLE, PARTS], **options)(images.clone(), {
        "article": labels, "parts": parts})
    np.random.seed(0)
    timm_images, timm_soft = Mixup(label_smoothing=0.0, num_classes=10, **{
        "mixup_alpha": 0.0, **options})(images.clone(), labels)
    assert torch.allclose(mixed_images, timm_images)
    assert torch.allclose(soft["article"], timm_soft, atol=1e-6)
    assert not torch.allclose(mixed_images, images)
    # the multilabel task is mixed with the same weights: soft = M @ parts with M from the article targets
    matrix = timm_soft[:, :8]
    assert torch.allclose(soft["parts"], matrix @ parts.float(), atol=1e-6)


def test_mixer_unknown_labels_and_odd_batches():
    torch.manual_seed(0)
    images = torch.randn(5, 3, 8, 8)
    labels = torch.tensor([0, -1, 2, 3, 4])
    np.random.seed(0)
    mixed_images, soft = BatchMixer([ARTICLE], mixup_alpha=1.0)(images.clone(), {"article": labels})
    target = soft["article"]
    # batch mode mixes image i with image 3 - i among the first four; the fifth is left alone
    assert torch.equal(mixed_images[4], images[4])
    assert torch.equal(target[4], F.one_hot(torch.tensor(4), 10).float())
    # image 1 is unknown, so are the mixes drawing on it (rows 1 and 2); the others sum to 1
    assert (target[[1, 2]] == -1).all()
    assert torch.allclose(target[[0, 3]].sum(dim=1), torch.ones(2))


def test_mixup_options_are_checked():
    assert not BatchMixer.enabled({"mixup_alpha": 0.0, "cutmix_alpha": 0.0})
    assert BatchMixer.enabled({"cutmix_alpha": 1.0})
    with pytest.raises(ConfigError, match="mode"):
        BatchMixer([ARTICLE], mixup_alpha=0.2, mode="bogus")
    with pytest.raises(ConfigError, match="prob"):
        BatchMixer([ARTICLE], mixup_alpha=0.2, prob=1.5)


def _run_pipeline(transform, images):
    return [transform(image=im)["image"] for im in images]


def test_erasing_and_shift_off_by_default_change_nothing(compose_cfg, fmnist_dir, tmp_path):
    """Off (p=0), the new transforms draw no random numbers: the train pipeline gives exactly what the
    pipeline without them gives, so earlier runs reproduce."""
    cfg = compose_cfg(tiny_overrides(fmnist_dir, tmp_path))
    images = [np.random.default_rng(i).integers(0, 255, (28, 28), dtype=np.uint8) for i in range(6)]
    with_options = instantiate(cfg.data.transforms.train)
    kept = [t for t in cfg.data.transforms.train.transforms
            if t._target_ not in ("albumentations.Erasing", "albumentations.Affine")]
    cfg.data.transforms.train.transforms = kept
    without = instantiate(cfg.data.transforms.train)
    for a, b in zip(_run_pipeline(with_options, images), _run_pipeline(without, images), strict=True):
        assert torch.equal(a, b)


def test_erasing_and_shift_when_on(compose_cfg, fmnist_dir, tmp_path):
    base = [*tiny_overrides(fmnist_dir, tmp_path), "data.transforms.hflip_p=0.0"]
    image = np.full((28, 28), 200, dtype=np.uint8)
    plain = instantiate(compose_cfg(base).data.transforms.train)(image=image)["image"]
    erased = instantiate(compose_cfg([*base, "data.transforms.erasing_p=1.0"])
                         .data.transforms.train)(image=image)["image"]
    zero = erased == 0
    assert zero.any() and not (plain == 0).any()
    assert 0.02 <= zero[0].float().mean().item() <= 0.26  # erasing_scale [0.02, 0.25] of the area
    shifted = instantiate(compose_cfg([*base, "data.transforms.shift_p=1.0",
                                       "data.transforms.shift_range=[0.2,0.2]"])
                          .data.transforms.train)(image=image)["image"]
    # shifted right and down by 20 %: a border of the background fill (0 before normalisation)
    assert torch.allclose(shifted[:, :5, :], shifted[:, :1, :1].expand(3, 5, shifted.shape[2]))
    assert not torch.allclose(shifted, plain)


def test_warmup_in_steps_and_epochs():
    def lrs(**kw):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        sched = cosine_with_warmup(opt, total_steps=100, **kw)
        out = []
        for _ in range(100):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    by_steps = lrs(warmup_steps=10)
    assert by_steps[9] < by_steps[10] == pytest.approx(1.0)
    assert by_steps == pytest.approx(lrs(warmup_epochs=2, steps_per_epoch=5))
    assert by_steps == pytest.approx(lrs(warmup_ratio=0.1))
    assert lrs(warmup_epochs=0.5, steps_per_epoch=20)[10] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lrs(warmup_epochs=2)


class WeightRecorder(Callback):
    """Raw weights after each optimizer step; the weights validation and test run on."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []
        self.val: dict[str, torch.Tensor] | None = None
        self.test: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _snapshot(module):
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(self._snapshot(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.val = self._snapshot(pl_module)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.test = self._snapshot(pl_module)


@pytest.mark.slow
def test_ema_weights_are_validated_saved_and_tested(compose_cfg, fmnist_dir, tmp_path):
    decay = 0.5
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "callbacks=ema",
                       f"callbacks.ema.decay={decay}", "training.freeze_epochs=0",
                       "model.loss.class_weights=balanced", "data.image_size=32", "optimizer.lr=1e-2"])
    recorder = WeightRecorder()
    train(cfg, extra_callbacks=[recorder])
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    saved, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert len(recorder.steps) == 120 // 16  # 120 training images, batches of 16, drop_last
    expected = dict(recorder.steps[0])
    for step in recorder.steps[1:]:
        for key, value in step.items():
            if value.is_floating_point():
                expected[key] = decay * expected[key] + (1 - decay) * value
    floats = [k for k, v in saved.items() if v.is_floating_point()]
    assert floats and set(saved) == set(raw)
    for key in floats:
        assert torch.allclose(saved[key], expected[key], atol=1e-5), key
        assert torch.equal(raw[key], recorder.steps[-1][key]), key
    assert any(not torch.allclose(saved[k], raw[k]) for k in floats)
    for snapshot in (recorder.val, recorder.test):
        assert all(torch.equal(snapshot[k], saved[k]) for k in floats)


@pytest.mark.slow
def test_best_experiment_composes_and_runs(compose_cfg, fmnist_dir, tmp_path):
    cfg = compose_cfg(["experiment=fashion_mnist_best"])
    assert cfg.backbone.name == "resnet50" and cfg.data.image_size == 112
    # trainer=gpu: bf16-mixed where bfloat16 is supported (composed here without CUDA: bf16-mixed)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.model.mixup.cutmix_alpha > 0 and cfg.data.transforms.erasing_p > 0
    assert cfg.callbacks.ema._target_ == "fashionlab.training.ema.EMAWeights"
    assert cfg.scheduler.warmup_epochs == 2 and cfg.model.loss.label_smoothing == 0.1
    cfg = compose_cfg(["experiment=fashion_mnist_best", *tiny_overrides(fmnist_dir, tmp_path),
                       "trainer=cpu", "trainer.fast_dev_run=true", "backbone.pretrained=false",
                       "data.image_size=32", "data.num_workers=0", "data.pin_memory=false"])
    metrics = train(cfg)
    assert np.isfinite(metrics["test/article/acc"])


def test_slurm_trainer_config(compose_cfg, fmnist_dir, tmp_path, monkeypatch):
    """trainer=slurm under a (faked) 2-node x 4-task srun allocation: ranks from SLURM, requeue on."""
    for key, value in {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_JOB_NAME": "fmnist",
                       "SLURM_JOB_ID": "123", "SLURM_NODEID": "1", "SLURM_PROCID": "5",
                       "SLURM_LOCALID": "1", "SLURM_NODELIST": "node[1-2]"}.items():
        monkeypatch.setenv(key, value)
    # Building a trainer sets Lightning's process-global rank (here 5): restore it afterwards, or
    # every later test in this process would skip rank-zero-only work (e.g. CSVLogger writes).
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), "trainer=slurm", "trainer.num_nodes=2",
                       "trainer.accelerator=cpu", "trainer.precision=32-true"])
    trainer = instantiate(cfg.trainer)
    env = trainer.strategy.cluster_environment
    assert type(env).__name__ == "SLURMEnvironment" and env.auto_requeue
    assert env.requeue_signal.name == "SIGUSR1"
    assert (trainer.num_nodes, trainer.world_size, trainer.global_rank) == (2, 8, 5)


def test_slurm_plugins_outside_slurm_and_bad_signal(monkeypatch):
    from fashionlab.training.cluster import slurm_plugins

    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert slurm_plugins() == []
    with pytest.raises(ConfigError, match="requeue_signal"):
        slurm_plugins(requeue_signal="SIGNOPE")


@pytest.mark.slow
def test_retrieval_gpu_experiment_composes_and_runs(compose_cfg, fmnist_dir, tmp_path):
    """The GPU retrieval recipe: fashion_mnist_best without mixing, plus a SupCon embedding."""
    cfg = compose_cfg(["experiment=fmnist_retrieval_gpu"])
    assert cfg.backbone.name == "resnet50" and cfg.data.image_size == 112
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_epochs == 30
    assert cfg.model.mixup.mixup_alpha == 0 and cfg.model.mixup.cutmix_alpha == 0
    assert (cfg.embedding.name, cfg.embedding.dim, cfg.embedding.task) == ("supcon", 128, "article")
    assert cfg.callbacks.ema._target_ == "fashionlab.training.ema.EMAWeights"
    cfg = compose_cfg(["experiment=fmnist_retrieval_gpu", *tiny_overrides(fmnist_dir, tmp_path),
                       "trainer=cpu", "trainer.fast_dev_run=true", "backbone.pretrained=false",
                       "data.image_size=32", "data.num_workers=0", "data.pin_memory=false"])
    metrics = train(cfg)
    assert np.isfinite(metrics["test/article/acc"])


def test_retrieval_cpu_experiment_is_the_recorded_command_line(compose_cfg, tmp_path):
    """experiment=fmnist_retrieval_cpu composes the config the recorded runs had on their command line."""
    named = compose_cfg(["experiment=fmnist_retrieval_cpu", f"hydra.run.dir={tmp_path}"])
    spelled = compose_cfg(["experiment=fmnist_lite0_cpu_best", "embedding=supcon", "trainer.max_epochs=5",
                           "data.image_size=48", f"hydra.run.dir={tmp_path}"])
    named_cfg = OmegaConf.to_container(named, resolve=False)
    spelled_cfg = OmegaConf.to_container(spelled, resolve=False)
    for cfg in (named_cfg, spelled_cfg):
        cfg.pop("hydra"), cfg.pop("task_name")
    assert named_cfg == spelled_cfg
    assert named.embedding.name == "supcon" and named.data.image_size == 48


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fmnist_best_h200", "fmnist_retrieval_h200"])
def test_h200_experiments_compose_and_run(name, compose_cfg, fmnist_dir, tmp_path):
    """The 3-minute H200 recipes of the GPU session: Lite0 (weights offline) at 96 px, capped by max_time.
    The retrieval recipe's toy run, evaluation and record are the GPU session's dry run
    (tests/test_gpu_session.py); the other recipe's toy run is here."""
    cfg = compose_cfg([f"experiment={name}"])
    assert cfg.backbone.name == "tf_efficientnet_lite0" and cfg.backbone.pretrained
    assert cfg.data.image_size == 96 and cfg.trainer.max_epochs == 12
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_time == "00:00:01:40"
    assert cfg.callbacks.ema._target_ == "fashionlab.training.ema.EMAWeights"
    assert (cfg.embedding.name == "supcon") == (name == "fmnist_retrieval_h200")
    if name == "fmnist_retrieval_h200":
        return
    cfg = compose_cfg([f"experiment={name}", *tiny_overrides(fmnist_dir, tmp_path), "trainer=cpu",
                       "trainer.fast_dev_run=true", "backbone.pretrained=false", "data.image_size=32",
                       "data.num_workers=0", "data.pin_memory=false"])
    metrics = train(cfg)
    assert np.isfinite(metrics["test/article/acc"])
