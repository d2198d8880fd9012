"""The Streamlit demo's non-UI parts: upload validation and the command that starts it.

An upload is refused with a message naming it when it is larger than `app.max_upload_mb`, has more
pixels than `app.max_megapixels` (checked from the header, before decoding), or is not a JPEG,
PNG, WebP, BMP, GIF or TIFF image whatever its name says. The server listens on 127.0.0.1 unless
told another address (`fashionlab app --host`), shows no developer toolbar (no Deploy button),
and the page names files relative to their catalogue folder, never by absolute local path.
`fashionlab app` becomes the server process (exec), so stopping it stops the server."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from fashionlab.data.images import TooManyPixelsError, load_rgb
from fashionlab.errors import BadImageError, FashionlabError

APP_SCRIPT = Path(__file__).with_name("webui") / "streamlit_app.py"


class UploadError(FashionlabError, ValueError):
    """An uploaded file is too large or is not a readable image."""


DEFAULT_MAX_PIXELS = 16_000_000
LOCALHOST = "127.0.0.1"


def read_upload(name: str, data: bytes, max_bytes: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                min_side: int | None = None) -> np.ndarray:
    """Decode an uploaded file into HxWx3 uint8, or raise UploadError with a message for the user.
    `min_side`: load_rgb's reduced decoding (the predictor's `decode_min_side`)."""
    if len(data) > max_bytes:
        raise UploadError(f"{name} is {_size(len(data))}; the limit is {_size(max_bytes)}")
    if not data:
        raise UploadError(f"{name} is empty")
    suffix = Path(name).suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        try:
            return load_rgb(handle.name, max_pixels=max_pixels, min_side=min_side)
        except TooManyPixelsError as err:
            (width, height), pixels = err.size, err.size[0] * err.size[1]
            raise UploadError(f"{name} is {width}x{height} pixels ({pixels / 1e6:.1f} megapixels); "
                              f"the limit is {err.limit / 1e6:g} megapixels") from None
        except (FashionlabError, OSError, ValueError) as err:
            message = err.reason if isinstance(err, BadImageError) else str(err).replace(handle.name, name)
            raise UploadError(f"{name} is not a readable image ({message})") from None


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def streamlit_command(
    index: str | Path,
    ckpt: str | Path | None = None,
    config: str | Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    port: int | None = None,
    max_upload_mb: float = 5.0,
    host: str = LOCALHOST,
) -> list[str]:
    """`python -m streamlit run app.py ...` headless, without usage statistics, listening on `host`
    (Streamlit's own default is every interface); Streamlit's upload limit is the configured one
    rounded up (the app checks the exact limit)."""
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_SCRIPT),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.maxUploadSize",
        str(max(1, math.ceil(max_upload_mb))),
        "--server.address",
        host,
        "--client.toolbarMode",
        "minimal",
    ]
    if port:
        command += ["--server.port", str(port)]
    command += ["--", "--index", str(index)]
    if ckpt:
        command += ["--ckpt", str(ckpt)]
    if config:
        command += ["--config", str(config)]
    for item in overrides:
        command += ["--set", item]
    return command


def run_server(command: Sequence[str]) -> NoReturn:
    """Replace this process by the Streamlit server (POSIX exec): `kill <pid>`, Ctrl-C or a job
    scheduler's SIGTERM sent to `fashionlab app` reach the server itself, and no orphan keeps the
    port. Elsewhere, run it as a child and wait."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(command[0], list(command))
    raise SystemExit(subprocess.call(list(command)))


def common_folder(paths: Iterable[object]) -> str:
    """The deepest folder holding every absolute path among `paths` ("" when there is none)."""
    absolute = [p for p in paths if isinstance(p, str) and os.path.isabs(p)]
    if not absolute:
        return ""
    try:
        base = os.path.commonpath(absolute)
    except ValueError:  # e.g. different drives
        return ""
    return os.path.dirname(base) if base in absolute else base  # one file (or all the same): its folder


def relative_paths(paths: pd.Series, base: str | None = None) -> pd.Series:
    """Absolute file paths shown relative to `base` (default: their common folder), e.g.
    `shirt/img001.jpg`; by name when outside it; other entries (e.g. `train[12]`) as they are."""
    base = common_folder(paths) if base is None else base

    def shown(p: object) -> object:
        if not (isinstance(p, str) and os.path.isabs(p)):
            return p
        inside = base and os.path.commonpath([base, p]) == base
        return os.path.relpath(p, base) if inside else Path(p).name

    return paths.map(shown)


def public_text(text: str, folders: Sequence[str | Path]) -> str:
    """A message for the page: each of `folders` (as given and resolved) by its name, the home
    folder as `~`."""
    for folder in folders:
        for form in sorted({str(folder), str(Path(folder).resolve())}, key=len, reverse=True):
            if os.path.isabs(form):
                text = text.replace(form, Path(form).name)
    home = str(Path.home())
    return text.replace(home + os.sep, "~" + os.sep) if len(home) > 1 else text
