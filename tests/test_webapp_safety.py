"""The web demo's safety (listening address, pixel and format limits on uploads, in a real headless
Chromium) and damaged catalogue files (issue 13)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from fixtures_browser import free_port, running_app, wait_for
from PIL import EpsImagePlugin, Image

from fashionlab import cli
from fashionlab.errors import DataFormatError
from fashionlab.recommend import webapp
from fashionlab.recommend.webapp import UploadError, read_upload, streamlit_command
from fashionlab.retrieval.catalogue import Catalogue

from conftest import ROOT, start_script


def pixel_bomb(path, side: int = 5000):
    """A 16-bit PNG of side x side pixels (25 MP by default) that takes a few KB on disk."""
    Image.new("I;16", (side, side), 1000).save(path)
    return path


def renamed_eps(path):
    """An EPS file (PostScript, opened through Ghostscript by PIL) named like a photo."""
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path, format="EPS")
    return path


def normal_png(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


# ---- listening address ------------------------------------------------------------------------

def _address(command: list[str]) -> str | None:
    return command[command.index("--server.address") + 1] if "--server.address" in command else None


def test_app_listens_on_localhost_unless_told(tmp_path):
    assert _address(streamlit_command(tmp_path)) == "127.0.0.1"
    assert _address(streamlit_command(tmp_path, port=8600)) == "127.0.0.1"
    assert _address(streamlit_command(tmp_path, host="0.0.0.0")) == "0.0.0.0"


@pytest.mark.slow
def test_cli_app_host_flag(tiny_eval_dir, monkeypatch):
    started = []
    monkeypatch.setattr(webapp, "run_server", started.append)
    for extra, expected in (([], "127.0.0.1"), (["--host", "0.0.0.0"], "0.0.0.0"),
                            (["--port", "8601"], "127.0.0.1")):
        assert cli.main(["app", "--index", str(tiny_eval_dir), *extra]) == 0
        assert _address(started[-1]) == expected, started[-1]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_app_command_stops_the_server(tiny_eval_dir, tmp_path, sig):
    """`fashionlab app` in the background, stopped with `kill <pid>` (SIGTERM) or Ctrl-C (SIGINT):
    the server stops too and frees its port (no re-parented Streamlit child keeps it)."""
    port = free_port()
    log_path = tmp_path / "app.log"
    with log_path.open("w") as log:
        # its own session: whatever it starts is cleaned up by group, even when the test fails
        app = start_script("-m", "fashionlab", "app", "--index", str(tiny_eval_dir), "--port", str(port),
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: listening(port) or app.poll() is not None, 120, "the server's port")
            assert app.poll() is None, log_path.read_text()
            app.send_signal(sig)
            app.wait(timeout=60)
            wait_for(lambda: port_free(port), 30, f"port {port} to be free after {sig.name}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.pid, signal.SIGKILL)
            app.wait(timeout=30)


# ---- uploads ----------------------------------------------------------------------------------

def test_upload_pixel_bomb_is_refused_before_decoding(tmp_path):
    data = pixel_bomb(tmp_path / "bomb.png").read_bytes()
    assert len(data) < 5 * 2**20  # passes the byte limit
    with pytest.raises(UploadError, match=r"^bomb\.png is 5000x5000 pixels \(25\.0 megapixels\); "
                                          r"the limit is 16 megapixels$"):
        read_upload("bomb.png", data, 5 * 2**20, max_pixels=16_000_000)
    assert read_upload("ok.png", normal_png(tmp_path / "ok.png").read_bytes(), 2**20,
                       max_pixels=16_000_000).shape == (32, 32, 3)


def test_upload_eps_named_jpg_never_reaches_ghostscript(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ghostscript was called")
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    data = renamed_eps(tmp_path / "photo.jpg").read_bytes()
    with pytest.raises(UploadError, match=r"^photo\.jpg is not a readable image \(not an image file of "
                                          r"an accepted format \(JPEG, PNG, WEBP, BMP, GIF, TIFF\)\)$"):
        read_upload("photo.jpg", data, 2**20, max_pixels=16_000_000)


# ---- catalogue files --------------------------------------------------------------------------

def _damaged(tiny_eval_dir, tmp_path, name: str):
    folder = tmp_path / "eval"
    shutil.copytree(tiny_eval_dir, folder)
    path = folder / name
    if name == "index.faiss":
        path.write_bytes(b"")
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return folder


DAMAGE = ["index.faiss", "embeddings.npy", "gallery.parquet"]


@pytest.mark.slow  # needs the shared trained run (tiny_run)
@pytest.mark.parametrize("name", DAMAGE)
def test_damaged_catalogue_file_is_named(tiny_eval_dir, tmp_path, name):
    folder = _damaged(tiny_eval_dir, tmp_path, name)
    with pytest.raises(DataFormatError, match=rf"{folder / name}: .*evaluate\.py"):
        Catalogue.load(folder)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["index.faiss", "embeddings.npy"])
def test_damaged_catalogue_file_is_one_line_from_the_cli(tiny_eval_dir, tmp_path, name, capsys):
    """The console command in a bare environment for the damaged index; the same command in this
    process for the damaged embeddings (the path from the command line to the message is shared)."""
    from fashionlab.cli import main

    folder = _damaged(tiny_eval_dir, tmp_path, name)
    args = ["similar", "--index", str(folder), "--random", "-k", "3"]
    if name == "index.faiss":
        result = subprocess.run([sys.executable, "-m", "fashionlab", *args], capture_output=True,
                                text=True, timeout=300, cwd=ROOT,
                                env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
        code, err = result.returncode, result.stderr
    else:
        code, err = main(args), capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and str(folder / name) in err, err
    assert "Traceback" not in err


# ---- the demo in a real browser (the approach of test_recommend.py) -----------------------------

@pytest.mark.browser
def test_app_refuses_bomb_and_eps_and_keeps_serving(tiny_eval_dir, browser, tmp_path):
    from selenium.webdriver.common.by import By

    with running_app(tiny_eval_dir, ["app.k=3"], tmp_path / "streamlit.log") as (port, app):
        browser.get(f"http://127.0.0.1:{port}")
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        uploader = lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=file]")  # noqa: E731
        wait_for(uploader, 90, "the uploader")

        bomb, eps = pixel_bomb(tmp_path / "bomb.png"), renamed_eps(tmp_path / "photo.jpg")
        uploader()[0].send_keys(f"{bomb}\n{eps}")
        wait_for(lambda: "bomb.png is 5000x5000 pixels" in body() and
                 "photo.jpg is not a readable image (not an image file of an accepted format" in body(),
                 90, "a message naming each bad file")
        assert "Traceback" not in body()

        uploader()[0].send_keys(str(normal_png(tmp_path / "ok.png")))
        wait_for(lambda: "Predicted:" in body(), 90, "the prediction for a normal upload")
        assert "bomb.png is 5000x5000 pixels" in body() and "Traceback" not in body()
        assert app.poll() is None
