"""The entry scripts' error convention (train.py, evaluate.py, sweep.py; the `fashionlab` CLI
formats its errors with `error_message` too).

A user error, i.e. a project error (fashionlab.errors), one of Hydra's compact errors (an
unknown config group option, an override of a missing key, a bad override, an instantiation
error) or a missing mandatory value, prints one line `error: <message>` on stderr and exits with
status 2, without a traceback. HYDRA_FULL_ERROR=1 shows the complete traceback instead; any other
exception keeps its traceback.

Hydra catches exceptions in two places: around composition (`run_and_report`, which prints its
own report and exits 1) and around the task function (the job's return value). `hydra_entry`
wraps both: it lets Hydra re-raise (by setting HYDRA_FULL_ERROR for the call, as if the user
had) and catches user errors inside the task function, so that Hydra's "Error executing job"
line is not printed either.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import (
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from fashionlab.environ import environ_set
from fashionlab.errors import FashionlabError

USER_ERRORS: tuple[type[BaseException], ...] = (
    FashionlabError, CompactHydraException, MissingMandatoryValue, InterpolationToMissingValueError)
EXIT_USER_ERROR = 2
# Marks a HYDRA_FULL_ERROR=1 that hydra_entry set (also seen by child processes, e.g. DDP ranks).
_FORCED = "FASHIONLAB_FORCED_HYDRA_FULL_ERROR"


def _omegaconf_text(err: OmegaConfBaseException) -> str:
    msg = (str(getattr(err, "msg", None) or err).strip().splitlines() or [type(err).__name__])[0]
    msg = msg.removeprefix("MissingMandatoryValue while resolving interpolation: ")
    # (a missing value met through an interpolation names the key that refers to it: not useful)
    key = None if isinstance(err, InterpolationToMissingValueError) else getattr(err, "full_key", None)
    return f"{msg} (key {key})" if key and str(key) not in msg else msg


def one_line(text: str) -> str:
    """Join a multi-line message into one line; indented lines after a colon become a list."""
    out, listing = "", False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        item = raw[:1].isspace()
        if not out:
            out = line
        elif out.endswith(":"):
            out, listing = f"{out} {line}", item
        elif item and listing:
            out += f", {line}"
        else:
            out, listing = f"{out}{'' if out.endswith(('.', ';', '!', '?')) else '.'} {line}", False
    return out


def error_message(err: BaseException) -> str:
    """One line describing a user error (with the OmegaConf error behind a Hydra one)."""
    text = _omegaconf_text(err) if isinstance(err, OmegaConfBaseException) else str(err)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        # re-raised from a DataLoader worker: the worker's message is the traceback's last line
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    text = text.split("\nConfig search path:")[0]  # Hydra's listing of where it looked
    cause = err.__cause__
    if isinstance(err, CompactHydraException) and isinstance(cause, OmegaConfBaseException):
        cause_text = _omegaconf_text(cause)
        if cause_text not in text:
            text = f"{text}\n{cause_text}"
    return one_line(text) or type(err).__name__


def full_error_requested() -> bool:
    """Whether the user asked for complete tracebacks (HYDRA_FULL_ERROR=1)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and _FORCED not in os.environ


def library_logs_to_hydra() -> None:
    """Send Python warnings and Lightning's messages through the logging Hydra set up for the job
    (console on stdout, the run's log file) rather than their own stderr handlers: stderr is left
    to errors, and the run's log file keeps them."""
    logging.captureWarnings(True)
    import lightning  # noqa: F401  (on import it adds a stderr handler to the `lightning` logger)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


def report_errors(messages: list[str]) -> NoReturn:
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def hydra_entry(config_name: str, config_path: str = "conf",
                preflight: Callable[[DictConfig], None] | None = None
                ) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """`hydra.main` for a project script, with the one-line user-error convention.

    `preflight(cfg)` runs first, before Lightning (and torch) are imported: quick checks such as
    the paths the run needs (fashionlab.preflight), so their errors come in seconds.

    In a multirun (-m) a job's user error does not stop the other jobs: each failed job's error
    is printed at the end (one line each, naming the job's overrides), then the exit status is 2.
    """

    def decorate(func: Callable[[DictConfig], Any]) -> Callable[[], None]:
        failures: list[str] = []

        @functools.wraps(func)  # Hydra finds the script (and conf/) through __wrapped__
        def task(cfg: DictConfig) -> Any:
            try:
                if preflight is not None:
                    preflight(cfg)
                library_logs_to_hydra()
                return func(cfg)
            except USER_ERRORS as err:
                if full_error_requested():
                    raise
                message = error_message(err)
                hydra_cfg = HydraConfig.get()
                if hydra_cfg.mode == RunMode.MULTIRUN:
                    message = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): {message}"
                failures.append(message)
                return None

        hydra_main = hydra.main(version_base="1.3", config_path=config_path,
                                config_name=config_name)(task)

        @functools.wraps(func)
        def main() -> None:
            if full_error_requested():
                hydra_main()
                return
            try:
                with environ_set({"HYDRA_FULL_ERROR": "1", _FORCED: "1"}):
                    hydra_main()
            except USER_ERRORS as err:
                report_errors([*failures, error_message(err)])
            if failures:
                report_errors(failures)

        return main

    return decorate
