"""The suite's own machinery: pytest-xdist's groups (session fixtures built once per group rely on
them) and the fork server that starts script processes without a new interpreter."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest

from conftest import SCRIPT_ENV, fork_script, fork_start


@pytest.mark.slow
def test_xdist_groups_run_on_one_worker(tmp_path):
    """`--dist loadgroup` sends a module marked xdist_group to one worker (pytest 9.2 broke it
    silently: pytest-dev/pytest-xdist#1386)."""
    (tmp_path / "test_grouped.py").write_text(textwrap.dedent("""
        import pytest
        pytestmark = pytest.mark.xdist_group("grouped")

        @pytest.mark.parametrize("i", range(6))
        def test_item(i):
            pass
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", "-v", "test_grouped.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")})
    assert done.returncode == 0, done.stdout[-3000:]
    workers = re.findall(r"\[(gw\d+)\].*PASSED test_grouped.py::test_item\[\d\]@grouped", done.stdout)
    assert len(workers) == 6 and len(set(workers)) == 1, done.stdout[-3000:]


SCRIPT = """
import os, sys
import torch
assert "wandb" not in sys.modules  # W&B makes its media folder at import: one per process
print(sys.argv[1:], sys.path[0], os.getcwd(), os.environ.get("FORKED_TEST"), torch.get_num_threads())
print("to stderr", file=sys.stderr)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), 9)
if sys.argv[1] == "raise":
    raise ValueError("uncaught")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.slow
def test_forked_script_runs_as_a_new_interpreter_would(tmp_path):
    script = tmp_path / "sub" / "script.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    env = {**os.environ, **SCRIPT_ENV, "FORKED_TEST": "yes"}
    threads = os.environ.get("OMP_NUM_THREADS")
    done = fork_script(str(script), "3", cwd=tmp_path, env=env)
    assert done.returncode == 3
    argv, path0, cwd, flag, n = done.stdout.strip().rsplit(" ", 4)
    assert (argv, path0, cwd, flag) == ("['3']", str(script.parent), str(tmp_path), "yes")
    if threads:
        assert n == threads  # the server imported torch with the test's thread setting
    assert done.stderr == "to stderr\n"

    killed = fork_script(str(script), "kill", cwd=tmp_path, env=env)
    assert killed.returncode == -signal.SIGKILL
    failed = fork_script(str(script), "raise", cwd=tmp_path, env=env)
    assert failed.returncode == 1 and "ValueError: uncaught" in failed.stderr

    # huggingface_hub (preloaded with timm) reads its settings at import: a script whose cache or
    # offline switch differs gets a server started with them
    hub = tmp_path / "hub.py"
    hub.write_text("import huggingface_hub.constants as c\nprint(c.HF_HUB_OFFLINE, c.HF_HUB_CACHE)\n")
    ours = fork_script(str(hub), cwd=tmp_path, env=env)
    assert ours.stdout.split() == [str(hf_constants.HF_HUB_OFFLINE), hf_constants.HF_HUB_CACHE]
    other = {**env, "HF_HUB_OFFLINE": "0" if hf_constants.HF_HUB_OFFLINE else "1", "HF_HOME": str(tmp_path)}
    theirs = fork_script(str(hub), cwd=tmp_path, env=other)
    assert theirs.stdout.split() == [str(not hf_constants.HF_HUB_OFFLINE), str(tmp_path / "hub")]

    module = fork_script("-m", "json.tool", "--help", cwd=tmp_path)
    assert module.returncode == 0 and "json.tool" in module.stdout

    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    process = fork_start(str(sleeper), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout.readline() == "started\n"
    assert process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(0.01)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM
    assert not Path(f"/proc/{process.pid}").exists()  # reaped before its status was reported
