"""A trial's outcome through faults: heartbeats and `tell` that retry database errors, an
interrupted (Ctrl-C) trial queued to run again, and a result kept when another worker had
failed the trial (its heartbeats did not reach the database for the grace period)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from fashionlab.sweep.study import quiet_experimental, study_lock

log = logging.getLogger(__name__)

T = TypeVar("T")
# Errors of a database that may answer again (connection dropped, server restarting, pool timeout).
TRANSIENT = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)


def with_retries(action: Callable[[], T], what: str, attempts: int = 6, delay: float = 1.0) -> T:
    """`action()`, retried after transient database errors (waits 1, 2, ... seconds)."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TRANSIENT as error:
            if attempt == attempts:
                raise
            log.warning("%s failed (%s); retrying", what, str(error).splitlines()[0])
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def heartbeat(storage: optuna.storages.RDBStorage, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every `heartbeat_interval` seconds while it runs; a database
    error skips a beat (logged once per outage) instead of ending the thread."""
    interval = storage.get_heartbeat_interval()
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        failing = False
        while True:
            try:
                storage.record_heartbeat(trial._trial_id)
                if failing:
                    log.info("heartbeat of trial %d recorded again", trial.number)
                failing = False
            except Exception as error:
                if not failing:
                    log.warning("heartbeat of trial %d failed (%s); retrying every %d s", trial.number,
                                str(error).splitlines()[0], interval)
                failing = True
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-trial-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def tell_result(study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial,
                value: float | None, state: TrialState) -> TrialState:
    """Record the trial's outcome (retrying database errors); returns the state stored.

    If another worker failed the trial meanwhile and queued it again, a complete or pruned
    result is recorded on that queued retry, which then does not run a second time.
    """
    with_retries(lambda: study.tell(trial, value, state=state, skip_if_finished=True),
                 f"recording trial {trial.number}")
    stored = with_retries(lambda: storage.get_trial(trial._trial_id), f"reading trial {trial.number}")
    if stored.state == state or state == TrialState.FAIL:
        return stored.state
    with study_lock(study, storage):
        retry = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                      if (t.system_attrs.get("retry_history") or [None])[-1] == trial.number), None)
        if retry is None:
            log.warning("trial %d finished (%s) after another worker had failed it (no heartbeat for the "
                        "grace period); a retry of its parameters runs as another trial",
                        trial.number, state.name)
            return stored.state
        if value is None and stored.intermediate_values:  # pruned: its last reported value
            value = stored.intermediate_values[max(stored.intermediate_values)]
        storage.set_trial_state_values(retry._trial_id, TrialState.RUNNING)
        for step, intermediate in stored.intermediate_values.items():
            storage.set_trial_intermediate_value(retry._trial_id, step, intermediate)
        storage.set_trial_user_attr(retry._trial_id, "result_of_trial", trial.number)
        storage.set_trial_state_values(retry._trial_id, state, None if value is None else [value])
    log.warning("trial %d finished after another worker had failed it: its result is recorded as "
                "trial %d (the queued retry of its parameters)", trial.number, retry.number)
    return state


@contextlib.contextmanager
def _no_sigint() -> Iterator[None]:
    """Ignore a second Ctrl-C while an interrupted trial is recorded (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def requeue_interrupted(study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial,
                        max_retry: int | None) -> None:
    """Fail an interrupted trial and queue its parameters again (up to `max_retry` times, as a dead
    worker's trial), both under the study lock so no worker counts the budget in between."""
    with _no_sigint(), study_lock(study, storage):
        with_retries(lambda: study.tell(trial, state=TrialState.FAIL, skip_if_finished=True),
                     f"recording interrupted trial {trial.number}")
        frozen = storage.get_trial(trial._trial_id)
        if frozen.state != TrialState.FAIL:
            return
        with quiet_experimental():
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)
    log.warning("trial %d interrupted: failed, and queued to run again", trial.number)
