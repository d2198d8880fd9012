"""Optuna study set-up: storage (SQLite file or any SQLAlchemy URL), sampler, pruner, trial budget."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from fashionlab.errors import ConfigError

log = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning (heartbeats, retry callback, matplotlib plots)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def storage_url(sweep: DictConfig, sweep_dir: Path) -> str:
    """`sweep.storage`, or the SQLite file `<sweep dir>/study.db` when it is null.

    A plain `postgresql://` URL uses the psycopg (3) driver, which this project installs.
    """
    if not sweep.get("storage"):
        return f"sqlite:///{sweep_dir / 'study.db'}"
    url = str(sweep.storage)
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def open_storage(sweep: DictConfig, url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats: trials of workers that died are failed, then retried.

    Workers started together on an empty database race to create Optuna's tables (PostgreSQL
    then reports a duplicate key in its catalogue); the loser retries after a short wait.
    """
    interval = sweep.get("heartbeat_interval")
    kwargs: dict[str, Any] = {}
    if interval:
        kwargs = {
            "heartbeat_interval": int(interval),
            "grace_period": int(sweep.grace_period) if sweep.get("grace_period") else None,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=sweep.get("max_retry", 1)),
        }
    for attempt in range(1, attempts + 1):
        try:
            with quiet_experimental():
                return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.DBAPIError as error:
            if attempt == attempts:
                raise
            log.warning("opening %s failed (%s); retrying", url.split("@")[-1], error.orig)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def make_pruner(sweep: DictConfig) -> optuna.pruners.BasePruner:
    """MedianPruner, HyperbandPruner or NopPruner, with `sweep.pruner_args` as keyword arguments."""
    kind = str(sweep.pruner).lower()
    args: dict[str, Any] = (OmegaConf.to_container(sweep.pruner_args, resolve=True)
                            if sweep.get("pruner_args") else {})
    classes = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "none": optuna.pruners.NopPruner}
    if kind not in classes:
        raise ConfigError(f"sweep.pruner={sweep.pruner!r} is not one of {', '.join(PRUNERS)}")
    try:
        return classes[kind](**args)
    except TypeError as error:
        raise ConfigError(f"sweep.pruner_args={args} does not fit sweep.pruner={kind}: {error}") from error


def open_study(sweep: DictConfig, sweep_dir: Path) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Create the study, or load it: for a shared server always (workers join), for SQLite
    only with `sweep.resume=true` (so a finished study is not extended by accident)."""
    url = storage_url(sweep, sweep_dir)
    shared = not url.startswith("sqlite")
    if not shared:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(sweep, url)
    name = str(sweep.study_name)
    exists = name in optuna.study.get_all_study_names(storage)
    if not shared and exists and not sweep.resume:
        raise ConfigError(
            f"study {name!r} already exists in {url}: pass sweep.resume=true to continue it "
            f"or choose a new sweep.study_name")
    if not shared and not exists and sweep.resume:
        raise ConfigError(f"sweep.resume=true but there is no study {name!r} in {url} to resume")
    if str(sweep.direction) not in ("maximize", "minimize"):
        raise ConfigError(f"sweep.direction={sweep.direction!r} must be maximize or minimize")
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=str(sweep.direction),
        pruner=make_pruner(sweep),
        load_if_exists=True,
    )
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(sweep.get("seed"), study, shared))
    return study, storage


def sampler_seed(seed: int | None, study: optuna.Study, shared: bool) -> int | None:
    """TPE seed: `sweep.seed` offset by the trials already in the study, so a resumed sweep does
    not repeat its first samples; on shared storage also by host and process, so that workers
    started together do not sample the same parameters."""
    if seed is None:
        return None
    offset = len(study.get_trials(deepcopy=False))
    if shared:
        offset += zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
    return (int(seed) + offset) % 2**32


@contextlib.contextmanager
def _study_lock(study: optuna.Study, storage: optuna.storages.RDBStorage) -> Iterator[None]:
    """Serialise budget checks across workers: a PostgreSQL advisory lock, or a file lock for SQLite."""
    url = storage.url
    if url.startswith("postgresql"):
        from sqlalchemy import text

        with storage.engine.connect() as connection:
            key = {"name": f"fashionlab-sweep:{study.study_name}"}
            connection.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), key)
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), key)
    elif url.startswith("sqlite"):
        lock_path = Path(url.removeprefix("sqlite:///")).with_suffix(".lock")
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        log.warning("no cross-worker lock for %s: the study may run one extra trial per worker",
                    url.split(":", 1)[0])
        yield


def claim_trial(study: optuna.Study, storage: optuna.storages.RDBStorage,
                n_trials: int) -> optuna.Trial | None:
    """A trial to run — a queued one, or a new one while the study (all workers, all states)
    holds fewer than `n_trials` — or None when the budget is spent.

    The check and `study.ask()` happen under a lock, so N workers never exceed the budget.
    """
    with _study_lock(study, storage):
        trials = study.get_trials(deepcopy=False)
        if len(trials) >= n_trials and not any(t.state == TrialState.WAITING for t in trials):
            return None
        return study.ask()


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.RDBStorage, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every `heartbeat_interval` seconds while it runs."""
    interval = storage.get_heartbeat_interval()
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-trial-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
