"""The prepared cache on an object store (a real S3-compatible server, SeaweedFS, on loopback):
http endpoints, and credentials from the AWS variables or data.cache.storage_options, reach every
client; concurrent builds of one key (on S3 and in a local folder) both succeed with one cache;
the whole path across processes (build, another process trains from it, evaluate.py reads the
gallery from it); and a secret in storage_options is in no file a run or an evaluation writes."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from fixtures_images import write_tree
from fixtures_runs import compose_config
from fixtures_s3 import S3Server
from hydra.utils import instantiate

from fashionlab.data.cache import build
from fashionlab.data.cache.build import RECORD
from fashionlab.training.run import prepare_config

from conftest import ROOT, fork_script

FORK = multiprocessing.get_context("fork")
#: How long a gated builder waits for the other one (a hang is a failure, not a stall).
GATE_S = 300


def image_folder(root: Path) -> Path:
    write_tree(root, {"a": 10, "b": 10, "c": 9}, ext=".jpg")  # 29 images: train 19, val 5, test 5
    return root


def cached_module(root: Path, cache_dir: str, *extra: str):
    cfg = compose_config("train", ["data=image_folder", f"data.root={root}", f"data.cache.dir={cache_dir}",
                                   "data.num_workers=0", "data.batch_size=4", "data.eval_batch_size=4",
                                   "data.image_size=32", "data.val_size=5", "data.test_size=5",
                                   "data.cache.workers=1", *extra])
    return instantiate(cfg.data, _recursive_=False)


def items(loader) -> list[int]:
    return sorted(int(i) for batch in loader for i in batch["index"])


def no_aws_variables(monkeypatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def options_of(server: S3Server) -> list[str]:
    return [f"+data.cache.storage_options.endpoint_url={server.endpoint}",
            f"+data.cache.storage_options.aws_access_key_id={server.access_key}",
            f"+data.cache.storage_options.aws_secret_access_key={server.secret_key}"]


def published(server: S3Server, prefix: str) -> tuple[dict, list[str]]:
    """(the one record under `prefix`, the keys of every object under it)."""
    keys = server.keys(prefix)
    records = [k for k in keys if k.endswith(f"/{RECORD}")]
    assert len(records) == 1, keys
    body = server.client().get_object(Bucket=server.bucket, Key=records[0])["Body"].read()
    return json.loads(body), keys


def assert_every_chunk_exists(server: S3Server, record: dict, record_key: str, keys: list[str]) -> None:
    """Each split's index.json and every chunk it names exist where the record points."""
    base = record_key.rsplit("/", 1)[0]
    build_dir = record.get("build_dir")
    for split, count in record["counts"].items():
        split_prefix = f"{base}/{build_dir}/{split}" if build_dir else f"{base}/{split}"
        index = json.loads(server.client().get_object(
            Bucket=server.bucket, Key=f"{split_prefix}/index.json")["Body"].read())
        assert sum(chunk["chunk_size"] for chunk in index["chunks"]) == count
        for chunk in index["chunks"]:
            assert f"{split_prefix}/{chunk['filename']}" in keys


def _gated_build(root: Path, cache_dir: str, out: Path, gate) -> None:
    """Child process: `gate()` (which holds the publication step back), then build the cache."""
    try:
        gate()
        dm = cached_module(root, cache_dir)
        dm.setup()
        out.write_text(json.dumps(dm.cache_record.data, sort_keys=True))
    except BaseException as exc:  # reported to the test through the exit status and the file
        out.with_suffix(".error").write_text(f"{type(exc).__name__}: {exc}")
        os._exit(1)
    os._exit(0)


@pytest.mark.slow
def test_concurrent_s3_builds_of_one_key_publish_one_cache(s3_server, tmp_path, monkeypatch):
    """Job A has uploaded its chunks but not yet published when job B builds and publishes the
    same key: B's record stays, A reuses it, and every chunk the record names exists."""
    no_aws_variables(monkeypatch)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    cache_dir, root = f"s3://{s3_server.bucket}/{prefix}", image_folder(tmp_path / "images")
    ready, go = FORK.Event(), FORK.Event()

    def gate_publication() -> None:
        publish = build._complete

        def gated(*args, **kwargs):
            ready.set()
            assert go.wait(GATE_S), "job B never finished"
            return publish(*args, **kwargs)

        build._complete = gated

    first = FORK.Process(target=_gated_build,
                         args=(root, cache_dir, tmp_path / "a.json", gate_publication))
    first.start()
    try:
        assert ready.wait(GATE_S), "job A never reached its publication"
        second = cached_module(root, cache_dir)
        second.setup()
    finally:
        go.set()
        first.join(GATE_S)
    error = tmp_path / "a.error"
    assert first.exitcode == 0, error.read_text() if error.exists() else first.exitcode
    record, keys = published(s3_server, prefix)
    assert record == second.cache_record.data == json.loads((tmp_path / "a.json").read_text())
    assert record["counts"] == {"train": 19, "val": 5, "test": 5}
    assert_every_chunk_exists(s3_server, record, next(k for k in keys if k.endswith(RECORD)), keys)
    # A's own build (its chunks under its own prefix) is gone: one cache
    assert {k.split("/")[2] for k in keys if k.count("/") > 2} == {record["build_dir"]}
    reader = cached_module(root, cache_dir)
    reader.setup()
    assert items(reader.inference_loader("train")) == list(range(19))


def test_concurrent_local_builds_of_one_key_both_succeed(tmp_path):
    """Two processes finish the same key and rename their builds into place at the same moment
    (a barrier holds each at its rename): one wins, the other reuses its cache, nothing is lost."""
    root, cache = image_folder(tmp_path / "images"), tmp_path / "cache"
    barrier = FORK.Barrier(2, timeout=GATE_S)

    def gate_rename() -> None:
        for name in ("rename", "replace"):
            real = getattr(os, name)

            def gated(src, dst, *args, _real=real, **kwargs):
                target = Path(dst)
                if target.parent == cache and not target.name.startswith("."):
                    barrier.wait()
                return _real(src, dst, *args, **kwargs)

            setattr(os, name, gated)

    jobs = [FORK.Process(target=_gated_build, args=(root, str(cache), tmp_path / f"{n}.json", gate_rename))
            for n in "ab"]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(GATE_S)
    errors = [p.read_text() for p in tmp_path.glob("*.error")]
    assert [job.exitcode for job in jobs] == [0, 0], errors
    (key,) = [p.name for p in cache.iterdir()]  # no partial build left behind
    record = json.loads((cache / key / RECORD).read_text())
    returned = [json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab"]
    assert returned == [record, record]
    assert record["counts"] == {"train": 19, "val": 5, "test": 5}
    reader = cached_module(root, str(cache))
    reader.setup()
    assert items(reader.inference_loader("train")) == list(range(19))
    assert items(reader.test_dataloader()) == list(range(5))


def script(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """A project script run from its own working folder with its own HOME and no AWS variables."""
    import matplotlib

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "WANDB_SERVICE"}
    # (matplotlib's font cache from the usual place: building it anew in each HOME costs ~15 s)
    env.update(HOME=str(home), MPLCONFIGDIR=matplotlib.get_cachedir(), PYTHONUNBUFFERED="1",
               WANDB_SILENT="true", WANDB_MODE="offline",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
               AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    cwd.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    return fork_script(*args, cwd=cwd, env=env, timeout=900)


def files_holding(folder: Path, secret: bytes) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and secret in p.read_bytes())


@pytest.mark.slow
def test_whole_cached_path_on_s3_and_the_secret_in_no_file(s3_server, tmp_path, monkeypatch):
    """This process builds the cache on S3 over http (AWS variables) and reads it back; another
    process, with its own working folder, HOME and no AWS variables (credentials in
    data.cache.storage_options on its command line), streams it and trains with W&B offline;
    evaluate.py, likewise, reads the gallery from it. The secret key is in no file of the run,
    the evaluation, W&B's folders or either HOME."""
    no_aws_variables(monkeypatch)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path / "builder-home"))
    root = tmp_path / "images"
    write_tree(root, {"a": 14, "b": 13, "c": 13}, ext=".jpg")  # train 29, val 5, test 6
    cache_dir = f"s3://{s3_server.bucket}/e2e-{uuid.uuid4().hex[:8]}"
    data = ["data=image_folder", f"data.root={root}", f"data.cache.dir={cache_dir}", "data.val_size=5",
            "data.test_size=6", "data.image_size=32", "backbone=timm", "backbone.name=test_resnet",
            "backbone.pretrained=false"]
    # litdata's default client refuses http:// endpoints (BadScheme): the build's uploads, the
    # record and the reads all reach the store with the AWS variables alone
    cfg = prepare_config(compose_config("train", [*data, "data.cache.workers=1", "data.num_workers=0"]))
    built = instantiate(cfg.data, _recursive_=False)
    built.setup()
    key, prefix = built.cache_record.key, cache_dir.split("/", 3)[3]
    record, keys = published(s3_server, prefix)
    assert record["counts"] == {"train": 29, "val": 5, "test": 6}
    assert_every_chunk_exists(s3_server, record, f"{prefix}/{key}/{RECORD}", keys)
    assert items(built.val_dataloader()) == list(range(5))

    run, secret = tmp_path / "run", s3_server.secret_key
    trained = script(str(ROOT / "train.py"), *data, *options_of(s3_server), "data.batch_size=4",
                     "data.eval_batch_size=4", "data.num_workers=1",
                     "training.freeze_epochs=0", "trainer=cpu", "trainer.max_epochs=1",
                     "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
                     "trainer.enable_model_summary=false", "callbacks.progress_bar=null",
                     "logger=wandb", "logger.log_images=2", f"hydra.run.dir={run}",
                     cwd=tmp_path / "train-work", home=tmp_path / "train-home")
    assert trained.returncode == 0, trained.stderr[-4000:]
    assert f"reusing {cache_dir}/{key}" in trained.stdout + trained.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data_cache_key"] == key and metrics["data_num_train"] == 29
    assert secret not in (run / "checkpoints" / "best.ckpt").read_bytes().decode("latin-1")

    out = tmp_path / "eval"
    evaluated = script(str(ROOT / "evaluate.py"), f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                       f"hydra.run.dir={out}", "progress=false", "retrieval.ks=[1]", "retrieval.k=3",
                       "retrieval.recall_vs_exact_k=3", "examples.k=2", "examples.num_queries=2",
                       f"+data.cache.dir={cache_dir}", *options_of(s3_server),
                       cwd=tmp_path / "eval-work", home=tmp_path / "eval-home")
    assert evaluated.returncode == 0, evaluated.stderr[-4000:]
    assert f"reusing {cache_dir}/{key}" in evaluated.stdout + evaluated.stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["gallery_split"], report["num_gallery"]) == ("train", 29)
    assert list((run / "wandb").glob("offline-run-*")), "no offline W&B run"
    assert files_holding(tmp_path, secret.encode()) == []


def test_secrets_are_masked_and_a_masked_value_counts_as_not_given(monkeypatch):
    """Every storage option but the public ones is shown as *** where a config is written; read
    back (a checkpoint's), *** is left out of the clients' options so the AWS variables apply."""
    from fashionlab.data.cache.store import client_options
    from fashionlab.redaction import config_secrets, masked_config

    options = {"endpoint_url": "http://store.lab:8333", "aws_access_key_id": "AKIDEXAMPLE",
               "aws_secret_access_key": "wJalrXUtnFEMI", "config": {"token": "t0ken-123"}}
    config = {"data": {"cache": {"dir": "s3://b/p", "storage_options": options}}, "seed": 1}
    masked = masked_config(config)
    assert masked["data"]["cache"]["storage_options"] == {
        "endpoint_url": "http://store.lab:8333", "aws_access_key_id": "***",
        "aws_secret_access_key": "***", "config": {"token": "***"}}
    assert config["data"]["cache"]["storage_options"] is options  # the running config keeps them
    assert config_secrets(config) == ["wJalrXUtnFEMI", "AKIDEXAMPLE", "t0ken-123"]
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    read_back = masked["data"]["cache"]["storage_options"]
    assert client_options("s3://b/p", read_back) == {
        "endpoint_url": "http://store.lab:8333", "region_name": "eu-west-3"}
