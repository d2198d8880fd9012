"""The Streamlit demo in headless Chromium: the `browser` fixture, a running app, polling."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str):
    """Poll `condition` every 0.5 s until it returns something truthy (returned) or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def running_app(eval_dir: Path, overrides: Sequence[str],
                log_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """`fashionlab app` on a free port, up and listening; (port, process). Stopped on exit."""
    from fashionlab.recommend.webapp import streamlit_command  # (not in pytest's main process)

    port = free_port()
    log = log_path.open("w")
    app = subprocess.Popen(streamlit_command(eval_dir, port=port, overrides=list(overrides)),
                           stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return app.poll() is not None

        wait_for(up, 60, "the Streamlit server")
        assert app.poll() is None, log_path.read_text()
        yield port, app
    finally:
        app.terminate()
        app.wait(timeout=20)
        log.close()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists():
        pytest.skip("needs Debian chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2200"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()
