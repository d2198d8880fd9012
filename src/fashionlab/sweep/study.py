"""Optuna study set-up: storage (SQLite file or any SQLAlchemy URL), sampler, pruner, trial budget."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy.exc
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from fashionlab.errors import ConfigError
from fashionlab.redaction import redact_url, scrub_files, url_password

log = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")
# claim_trial's answer when the budget is taken but other workers' trials still run (one may be dead)
WAIT: Literal["wait"] = "wait"
# Seed stride between workers that join a study holding the same number of trials.
WORKER_SEED_STRIDE = 1_000_003


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning (heartbeats, retry callback, matplotlib plots)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def redact(url: str) -> str:
    """`url` with its password, if any, shown as `***` (for logs, messages and saved configs)."""
    return redact_url(url)


def scrub_password(url: str, folder: Path) -> None:
    """Replace the password of `url` in the saved Hydra configs of `folder` (a password written
    into a config file rather than given on the command line or through the environment)."""
    password = url_password(url)
    if password:
        scrub_files((folder / ".hydra").glob("*.yaml"), [password])


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
    if not url.startswith("sqlite"):  # a server that dropped idle connections: test them before use
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    if interval:
        with quiet_experimental():
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=sweep.get("max_retry", 1))
        kwargs |= {
            "heartbeat_interval": int(interval),
            "grace_period": int(sweep.grace_period) if sweep.get("grace_period") else None,
            "heartbeat_stale_trial_callback": retry,
        }
    for attempt in range(1, attempts + 1):
        try:
            with quiet_experimental():
                return optuna.storages.RDBStorage(url, **kwargs)
        except sqlalchemy.exc.DBAPIError as error:
            if attempt == attempts:
                raise
            log.warning("opening %s failed (%s); retrying", redact(url), error.orig)
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
            f"study {name!r} already exists in {redact(url)}: pass sweep.resume=true to continue it "
            f"or choose a new sweep.study_name")
    if not shared and not exists and sweep.resume:
        raise ConfigError(f"sweep.resume=true but there is no study {name!r} in {redact(url)} to resume")
    if str(sweep.direction) not in ("maximize", "minimize"):
        raise ConfigError(f"sweep.direction={sweep.direction!r} must be maximize or minimize")
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=str(sweep.direction),
        pruner=make_pruner(sweep),
        load_if_exists=True,
    )
    seed = sweep.get("seed")
    seed = None if seed is None else worker_seed(int(seed), study, storage)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study, storage



def worker_seed(seed: int, study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    """TPE seed of this worker: `sweep.seed` offset by the trials already in the study (a resumed
    sweep does not repeat its first samples) and by the workers that joined before it at the same
    trial count (workers started together, on a server or one SQLite file, draw different
    parameters). A single worker on a new study gets `sweep.seed` itself."""
    with study_lock(study, storage):
        n_trials = len(study.get_trials(deepcopy=False))
        study_id = storage.get_study_id_from_name(study.study_name)
        joins = json.loads(storage.get_study_system_attrs(study_id).get("fashionlab:worker_joins", "{}"))
        index = joins.get(str(n_trials), 0)
        joins[str(n_trials)] = index + 1
        storage.set_study_system_attr(study_id, "fashionlab:worker_joins", json.dumps(joins))
    if index:
        log.info("worker %d to join study %r at %d trials: sampler seed offset by %d",
                 index + 1, study.study_name, n_trials, index * WORKER_SEED_STRIDE)
    return (seed + n_trials + index * WORKER_SEED_STRIDE) % 2**32


@contextlib.contextmanager
def study_lock(study: optuna.Study, storage: optuna.storages.RDBStorage) -> Iterator[None]:
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


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished trials count: complete, pruned, and failed by their own error (bad parameters, a
    NaN metric: recorded in the `error` attribute). A trial lost with its worker (killed, stale
    heartbeat, Ctrl-C) does not; its parameters run again as a new trial, which counts."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def claim_trial(study: optuna.Study, storage: optuna.storages.RDBStorage,
                n_trials: int) -> optuna.Trial | Literal["wait"] | None:
    """A trial to run — a queued one (e.g. a lost trial's retry), or a new one while finished plus
    running trials are fewer than `n_trials` — WAIT while other workers' running trials may still
    be needed (one may belong to a dead worker: with heartbeats it is failed and queued again once
    stale), or None when `n_trials` trials have finished.

    Failing stale trials, the count and `study.ask()` happen under a lock, so N workers never
    exceed the budget.
    """
    with study_lock(study, storage), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        heartbeats = bool(storage.get_heartbeat_interval())
        if heartbeats:
            with quiet_experimental():
                optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL, then queued
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return study.ask()
        done = sum(counts_toward_budget(t) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if done + running < n_trials:
            return study.ask()
        if done < n_trials and running and heartbeats:
            return WAIT
        if done < n_trials:
            log.warning("%d trial(s) still RUNNING and no heartbeats (sweep.heartbeat_interval=null): "
                        "if their worker died they are not run again", running)
        return None
