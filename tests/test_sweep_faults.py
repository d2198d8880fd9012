"""Sweeps under faults: a worker killed (SIGKILL) or interrupted (Ctrl-C) mid-trial, database errors
under the heartbeat and `tell`, workers sharing one SQLite file, and a storage password that must
not be written anywhere."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import test_sweep
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState
from sweep_hang import ENV as HANG_ENV
from sweep_hang import MARK_ENV
from test_sweep import trial_overrides

from fashionlab.sweep.faults import heartbeat
from fashionlab.sweep.run import run_sweep
from fashionlab.sweep.study import open_storage, open_study

from conftest import fork_script, fork_start

# Fixtures of test_sweep.py: one thread per process, the tiny sweep config, a throw-away PostgreSQL.
one_thread = test_sweep.one_thread
sweep_cfg = test_sweep.sweep_cfg
postgres_url = test_sweep.postgres_url

METRIC = "val/article/acc"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def load(cfg) -> optuna.Study:
    url = f"sqlite:///{Path(cfg.paths.output_dir) / 'study.db'}"
    return optuna.load_study(study_name=str(cfg.sweep.study_name), storage=url)


def db_error() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))


def assert_finished_with_retry(study: optuna.Study, n_trials: int, killed: int) -> None:
    """n_trials finished, nothing left running or queued, the killed trial's parameters ran again."""
    trials = study.trials
    states = [t.state.name for t in trials]
    assert sum(t.state in FINISHED for t in trials) == n_trials, states
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials), states
    assert trials[killed].state == TrialState.FAIL, states
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1, states
    assert retries[0].state == TrialState.COMPLETE and retries[0].params == trials[killed].params


# --- in-process: fake training, fast ------------------------------------------------------------

@pytest.mark.slow
def test_heartbeat_keeps_beating_after_a_database_error(tmp_path, monkeypatch):
    sweep = OmegaConf.create({"heartbeat_interval": 1, "grace_period": None, "max_retry": 1})
    storage = open_storage(sweep, f"sqlite:///{tmp_path / 'heartbeat.db'}")
    trial = optuna.create_study(storage=storage).ask()
    record, calls, beating = storage.record_heartbeat, [], threading.Event()

    def flaky(trial_id: int) -> None:
        calls.append(trial_id)
        if len(calls) == 1:
            raise db_error()
        record(trial_id)
        if len(calls) >= 3:
            beating.set()

    monkeypatch.setattr(storage, "record_heartbeat", flaky)
    with heartbeat(storage, trial):
        assert beating.wait(60), f"heartbeat stopped after the database error ({len(calls)} call(s))"


@pytest.mark.slow
def test_result_is_kept_when_another_worker_failed_the_trial(sweep_cfg, monkeypatch):
    """Another worker saw no heartbeat (a database outage), failed the trial and queued its retry;
    the trial then finishes: its result completes the retry instead of raising in study.tell."""
    cfg = sweep_cfg(None, "sweep.n_trials=1", "sweep.pruner=none", "sweep.study_name=told")
    calls = []

    def train(train_cfg, extra_callbacks=None, finish_wandb_run=True):
        calls.append(1)
        other = load(cfg)
        running = other.get_trials(states=(TrialState.RUNNING,))[0]
        other._storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
        with pytest.warns(optuna.exceptions.ExperimentalWarning):
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(
                other, other._storage.get_trial(running._trial_id))
        return {METRIC: 0.5}

    monkeypatch.setattr("fashionlab.sweep.objective.train", train)
    result = run_sweep(cfg)
    trials = load(cfg).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].value == 0.5 and trials[1].params == trials[0].params
    assert len(calls) == 1 and result["complete"] == 1


@pytest.mark.slow
def test_tell_retries_a_database_error(sweep_cfg, monkeypatch):
    cfg = sweep_cfg(None, "sweep.n_trials=1", "sweep.pruner=none", "sweep.study_name=retell")
    monkeypatch.setattr("fashionlab.sweep.objective.train",
                        lambda cfg, extra_callbacks=None, finish_wandb_run=True: {METRIC: 0.5})
    real = optuna.storages.RDBStorage.set_trial_state_values
    failures = []

    def flaky(self, trial_id, state, values=None):
        if state.is_finished() and not failures:
            failures.append(trial_id)
            raise db_error()
        return real(self, trial_id, state, values)

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", flaky)
    assert run_sweep(cfg)["complete"] == 1
    assert failures and [t.state for t in load(cfg).trials] == [TrialState.COMPLETE]


@pytest.mark.slow
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), SystemExit(1)], ids=["ctrl-c", "lightning-exit"])
def test_ctrl_c_fails_the_trial_and_it_runs_again(sweep_cfg, monkeypatch, interrupt):
    """Ctrl-C in a trial (Lightning turns it into SystemExit(1)): the trial is failed and queued
    again, so the next worker (or `sweep.resume=true`) runs its parameters; n_trials finish."""
    calls = []

    def train(train_cfg, extra_callbacks=None, finish_wandb_run=True):
        calls.append(1)
        if len(calls) == 1:
            raise interrupt
        return {METRIC: 0.5}

    monkeypatch.setattr("fashionlab.sweep.objective.train", train)
    overrides = ("sweep.n_trials=2", "sweep.pruner=none", "sweep.study_name=ctrlc")
    with pytest.raises(type(interrupt)):
        run_sweep(sweep_cfg(None, *overrides))
    cfg = sweep_cfg(None, *overrides, "sweep.resume=true")
    trials = load(cfg).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params
    assert run_sweep(cfg)["complete"] == 2
    trials = load(cfg).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[1].params == trials[0].params


def test_workers_sharing_a_sqlite_file_draw_different_parameters(sweep_cfg):
    cfg = sweep_cfg(None, "sweep.study_name=seeds", "sweep.direction=maximize")
    sweep_dir = Path(cfg.paths.output_dir)
    first, _ = open_study(cfg.sweep, sweep_dir)
    with open_dict(cfg):
        cfg.sweep.resume = True  # a second worker joins the (still empty) study
    second, _ = open_study(cfg.sweep, sweep_dir)

    def draw(study: optuna.Study) -> float:
        return study.ask().suggest_float("optimizer.lr", 1e-5, 1e-1, log=True)

    # a single worker draws what TPESampler(seed=sweep.seed) draws, as before per-worker seeds
    reference = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=int(cfg.sweep.seed)))
    lr = draw(first)
    assert lr == draw(reference)
    assert draw(second) != lr


@pytest.mark.parametrize(("argv", "hidden", "url"), [
    (["search_space=lr", "sweep.storage=postgresql://me:s3cret@db.example:5432/sweeps", "data.root=/d"],
     ["search_space=lr", "sweep.storage=postgresql://me:***@db.example:5432/sweeps", "data.root=/d"],
     "postgresql://me:s3cret@db.example:5432/sweeps"),
    (["sweep.storage=postgresql://me@db.example/sweeps"], ["sweep.storage=postgresql://me@db.example/sweeps"],
     None),
    (["sweep.n_trials=3"], ["sweep.n_trials=3"], None),
])
def test_storage_password_is_taken_off_the_command_line(argv, hidden, url):
    from fashionlab.sweep.argv import hide_storage_password

    assert hide_storage_password(argv) == (hidden, url)


def test_redact_hides_the_password_of_any_url():
    from fashionlab.sweep.study import redact

    assert redact("postgresql+psycopg://me:s3cret@db/sweeps") == "postgresql+psycopg://me:***@db/sweeps"
    assert redact("sqlite:////tmp/x/study.db") == "sqlite:////tmp/x/study.db"


# --- real workers: subprocesses killed mid-trial -------------------------------------------------

def wait_for(condition: Callable[[], bool], what: str, worker: subprocess.Popen | None = None,
             log: Path | None = None, timeout: float = 600) -> None:
    """Poll `condition` until true; fail if the worker exits first or after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if worker is not None and worker.poll() is not None:
            pytest.fail(f"waiting for {what}: the worker exited ({worker.returncode}):\n"
                        f"{log.read_text()[-3000:] if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_hanging_worker(args: list[str], hang_at: int, tmp_path: Path, monkeypatch) -> tuple:
    """sweep.py whose `hang_at`-th trial hangs in training; (process, mark file, log file)."""
    mark, log = tmp_path / "hanging", tmp_path / "hanging.log"
    monkeypatch.setenv(HANG_ENV, str(hang_at))
    monkeypatch.setenv(MARK_ENV, str(mark))
    with open(log, "w") as out:
        worker = fork_start("tests/sweep_hang.py", "sweep.py", *args, stdout=out,
                              stderr=subprocess.STDOUT)
    monkeypatch.delenv(HANG_ENV)
    monkeypatch.delenv(MARK_ENV)
    return worker, mark, log


def sweep_args(study_name: str, fmnist_dir: Path, *extra: str) -> list[str]:
    return ["search_space=lr", f"sweep.study_name={study_name}", "sweep.n_trials=3", "sweep.pruner=none",
            "sweep.heartbeat_interval=1", "sweep.grace_period=5", *trial_overrides(fmnist_dir), *extra]


@pytest.mark.slow
def test_sigkilled_worker_trial_runs_again_sqlite(fmnist_dir, tmp_path, monkeypatch):
    """The issue's case: a worker killed in its second trial; once that trial's heartbeat is stale,
    another worker resumes the study (it used to end COMPLETE, FAIL, COMPLETE)."""
    sweep_dir = tmp_path / "sweep"
    args = sweep_args("killed", fmnist_dir, f"hydra.run.dir={sweep_dir}")
    worker, mark, log = start_hanging_worker(args, 1, tmp_path, monkeypatch)
    try:
        wait_for(mark.exists, "the second trial to train", worker, log)
    finally:
        worker.kill()
        worker.wait()
    url = f"sqlite:///{sweep_dir / 'study.db'}"
    study = optuna.load_study(study_name="killed", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=5)
    wait_for(lambda: storage._get_stale_trial_ids(study._study_id), "the killed trial to go stale")

    proc = fork_script("sweep.py", *args, "sweep.resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_finished_with_retry(optuna.load_study(study_name="killed", storage=url), 3, killed=1)


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkilled_worker_trial_runs_again_postgres(postgres_url, fmnist_dir, tmp_path, monkeypatch):
    """A worker killed in its first trial while a second worker joins the shared study: the second
    worker waits for the dead trial to go stale, runs it again and finishes the study."""
    args = sweep_args("killed_pg", fmnist_dir, f"sweep.storage={postgres_url}")
    worker, mark, log = start_hanging_worker([*args, f"hydra.run.dir={tmp_path / 'a'}"], 0, tmp_path,
                                             monkeypatch)
    try:
        wait_for(mark.exists, "the first trial to train", worker, log)
        other = fork_start("sweep.py", *args, f"hydra.run.dir={tmp_path / 'b'}", stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    finally:
        worker.kill()
        worker.wait()
    output = other.communicate(timeout=900)[0]
    assert other.returncode == 0, output[-3000:]
    storage = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    assert_finished_with_retry(optuna.load_study(study_name="killed_pg", storage=storage), 3, killed=0)
    assert "study 'killed_pg': 4 trials (3 complete" in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.postgres
def test_storage_password_is_written_nowhere(postgres_url, fmnist_dir, tmp_path):
    secret = "Sweep-Pw-7f3a"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@")  # trust auth: any password works
    sweep_dir = tmp_path / "sweep"
    proc = fork_script("sweep.py", "search_space=lr", f"sweep.storage={url}", "sweep.study_name=secret",
                      "sweep.n_trials=1", "sweep.pruner=none", "sweep.heartbeat_interval=1",
                      *trial_overrides(fmnist_dir), f"hydra.run.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert secret not in proc.stdout and secret not in proc.stderr
    files = [path for path in sweep_dir.rglob("*") if path.is_file()]
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "sweep.log"} <= {
        str(path.relative_to(sweep_dir)) for path in files}
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert "postgres:***@" in (sweep_dir / ".hydra" / "overrides.yaml").read_text()
    assert "postgres:***@" in (sweep_dir / "sweep.log").read_text()
