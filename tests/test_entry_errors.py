"""train.py, evaluate.py and sweep.py report user errors as one line `error: <message>` on stderr
with exit status 2 (Hydra's composition errors included); HYDRA_FULL_ERROR=1 shows the traceback,
and unexpected exceptions keep theirs.

Each script runs once as a real process (`run_script`: what the shell sees, and that the error
comes before torch loads where it should); the other cases run its `__main__` in this process
(`run_entry`), which reports the same exit status and stderr at a fraction of the cost."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fashionlab.entrypoint import error_message, one_line
from fashionlab.errors import ConfigError

from conftest import ROOT, run_entry, run_script


def assert_one_line_error(proc, *expected: str) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def case(script: str, args: list[str], expected: list[str], slow: bool = False):
    return pytest.param(script, args, expected, id=f"{script}-{'-'.join(args) or 'none'}",
                        marks=pytest.mark.slow if slow else ())


# Cases that fail during Hydra's composition; the REAL ones run in a new interpreter.
COMPOSITION = [
    case("train.py", ["backbone=nosuch"], ["Could not find 'backbone/nosuch'", "xception"]),
    case("train.py", ["trainer.nosuch=1"], ["trainer.nosuch", "+trainer.nosuch=1"]),
    case("train.py", ["trainer.max_epochs=["], ["no viable alternative"]),
    case("evaluate.py", ["backbone=nosuch"], ["Could not override 'backbone'"]),
    case("evaluate.py", [], ["Missing mandatory value: ckpt_path"]),
    case("sweep.py", ["backbone=nosuch"],
         ["train overrides backbone=nosuch", "Could not find 'backbone/nosuch'"]),
    case("sweep.py", ["search_space=nosuch"], ["Could not find 'search_space/nosuch'", "default, lr"]),
]
REAL = {("train.py", "backbone=nosuch"), ("sweep.py", "search_space=nosuch")}


@pytest.mark.parametrize(("script", "args", "expected"), COMPOSITION)
def test_hydra_errors_are_one_line(script, args, expected, tmp_path):
    run = run_script if (script, *args) in REAL else run_entry
    proc = run(script, *args, f"hydra.run.dir={tmp_path}")
    assert_one_line_error(proc, *expected)


def test_train_bad_value_is_one_line(tmp_path):
    proc = run_entry("train.py", "trainer.max_epochs=abc", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(proc, "trainer.max_epochs='abc'")


@pytest.mark.slow  # a real process that imports torch before failing
def test_evaluate_missing_checkpoint_is_one_line(tmp_path):
    proc = run_script("evaluate.py", "ckpt_path=/nonexistent.ckpt", f"hydra.run.dir={tmp_path}",
                      timeout=300)
    assert_one_line_error(proc, "checkpoint not found: /nonexistent.ckpt")


@pytest.mark.slow
def test_evaluate_bad_value_is_one_line(tiny_run, tmp_path):
    proc = run_entry("evaluate.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}",
                     "retrieval.within_label=nosuch", f"hydra.run.dir={tmp_path}", "progress=false")
    assert_one_line_error(proc, "retrieval.within_label='nosuch'")


@pytest.mark.slow
def test_evaluate_unknown_split_is_one_line(tiny_run, tmp_path):
    proc = run_entry("evaluate.py", f"ckpt_path={tiny_run / 'checkpoints' / 'best.ckpt'}",
                     "query=nosuch", f"hydra.run.dir={tmp_path}", "progress=false")
    assert_one_line_error(proc, "query='nosuch'", "train, val, test")


def test_sweep_bad_value_is_one_line(tmp_path):
    proc = run_entry("sweep.py", "sweep.pruner=nosuch", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(proc, "sweep.pruner='nosuch'")


@pytest.mark.parametrize(("script", "args"), [
    ("train.py", ["backbone=nosuch"]),
    ("evaluate.py", ["ckpt_path=/nonexistent.ckpt"]),
])
def test_hydra_full_error_shows_the_traceback(script, args, tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    proc = run_entry(script, *args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert not any(line.startswith("error: ") for line in proc.stderr.splitlines())


# -- the wrapper itself, on a tiny script (no torch: fast) ---------------------------------------

TINY_SCRIPT = """
from pathlib import Path
from fashionlab.entrypoint import hydra_entry
from fashionlab.errors import ConfigError

@hydra_entry(config_name="tiny")
def main(cfg):
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / f"ran-{cfg.mode}").write_text("")
    if cfg.mode == "user":
        raise ConfigError(f"mode={cfg.mode!r} is a user error")
    if cfg.mode == "bug":
        raise RuntimeError("an unexpected failure")

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def tiny_script(tmp_path) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "tiny.yaml").write_text(textwrap.dedent(f"""
        mode: ok
        out: {tmp_path / 'out'}
        hydra:
          run: {{dir: {tmp_path / 'run'}}}
          sweep: {{dir: {tmp_path / 'multirun'}}}
    """))
    script = tmp_path / "tiny.py"
    script.write_text(TINY_SCRIPT)
    return script


def test_wrapper_user_error(tiny_script):
    proc = run_entry(tiny_script, "mode=user", cwd=tiny_script.parent)
    assert_one_line_error(proc, "mode='user' is a user error")
    assert (tiny_script.parent / "run" / "tiny.log").is_file(), "Hydra's job set-up still ran"


@pytest.mark.slow
def test_wrapper_unexpected_exception_keeps_its_traceback(tiny_script):
    proc = run_script(str(tiny_script), "mode=bug", cwd=tiny_script.parent)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "RuntimeError: an unexpected failure" in proc.stderr


def test_wrapper_multirun_runs_every_job_then_reports(tiny_script):
    """A job's user error does not stop the others (here the next one, which succeeds)."""
    proc = run_entry(tiny_script, "-m", "mode=user,ok", cwd=tiny_script.parent)
    line = assert_one_line_error(proc, "job 0 (mode=user)", "is a user error")
    assert "job 1" not in line
    out = tiny_script.parent / "out"
    assert (out / "ran-user").is_file() and (out / "ran-ok").is_file()


def test_wrapper_full_error_for_a_user_error(tiny_script, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    proc = run_entry(tiny_script, "mode=user", cwd=tiny_script.parent)
    assert proc.returncode == 1 and "fashionlab.errors.ConfigError: mode='user'" in proc.stderr


# -- formatting ---------------------------------------------------------------------------------

def test_one_line_joins_lists_and_sentences():
    text = "In 'train': Could not find 'backbone/x'\n\nAvailable options in 'backbone':\n\ta\n\tb\n"
    assert one_line(text) == "In 'train': Could not find 'backbone/x'. Available options in 'backbone': a, b"
    assert one_line("single line") == "single line"


def test_error_message_of_hydra_and_omegaconf_errors():
    cfg = OmegaConf.create({"trainer": {"max_epochs": 1}})
    OmegaConf.set_struct(cfg, True)
    try:
        cfg.trainer.nosuch = 1
    except OmegaConfBaseException as cause:
        try:
            raise ConfigCompositionException("Could not override 'trainer.nosuch'.") from cause
        except ConfigCompositionException as err:
            message = error_message(err)
    assert message == ("Could not override 'trainer.nosuch'. "
                       "Key 'nosuch' is not in struct (key trainer.nosuch)")
    message = "data.image_size=10 is below 71px"
    assert error_message(ConfigError(message)) == message


def test_scripts_use_the_wrapper():
    for script in ("train.py", "evaluate.py", "sweep.py"):
        assert "@hydra_entry(" in (ROOT / script).read_text(), script
