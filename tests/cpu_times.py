"""`pytest --cpu-times=FILE`: the CPU seconds each test costs (this process, the processes it
waited for and those it started from tests/forkserver.py; setup and teardown included), appended
to FILE as CSV rows `nodeid,seconds`.

Wall-clock durations (`--durations`) grow with whatever else the machine runs; CPU time barely
does, so this is the measure to compare tests by on a shared or loaded machine
(docs/contributing.md)."""

from __future__ import annotations

import resource

import forkserver
import pytest
from filelock import FileLock


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-times", metavar="FILE", default=None,
                     help="append each test's CPU seconds (with its waited-for children) to FILE")


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
            + forkserver.forked_cpu_seconds)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if not item.config.getoption("--cpu-times"):
        return (yield)
    path, start = item.config.getoption("--cpu-times"), _cpu_seconds()
    try:
        return (yield)
    finally:
        with FileLock(f"{path}.lock"), open(path, "a") as out:
            out.write(f"{item.nodeid},{_cpu_seconds() - start:.2f}\n")
