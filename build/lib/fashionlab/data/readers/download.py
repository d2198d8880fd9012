"""Checksum-verified downloads of published dataset files."""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

from filelock import FileLock

from fashionlab.errors import DataNotFoundError
from fashionlab.fileio import file_digest

log = logging.getLogger(__name__)


def download_file(
    filename: str, mirrors: list[str], dest_dir: Path, md5: str | None, timeout: float = 60.0
) -> Path:
    """Fetch `filename` from the first mirror that serves it with the expected MD5.

    The file is written next to its destination and renamed only once verified, so an
    interrupted or corrupted download never leaves a file that looks complete. A lock file
    (`<filename>.lock`) makes a second process wait for the first one's download, then use it.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / filename
    with FileLock(str(dest.with_name(dest.name + ".lock"))):
        if dest.is_file() and (md5 is None or file_digest(dest, "md5") == md5):
            log.info("%s: downloaded meanwhile by another process", dest)
            return dest
        return _download(filename, mirrors, dest, md5, timeout)


def _download(filename: str, mirrors: list[str], dest: Path, md5: str | None, timeout: float) -> Path:
    errors: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        partial = dest.with_name(dest.name + ".part")
        try:
            log.info("downloading %s", url)
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: {exc}")
            continue
        if md5 is not None and (got := file_digest(partial, "md5")) != md5:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: MD5 {got} does not match the expected {md5}")
            continue
        os.replace(partial, dest)
        return dest
    raise DataNotFoundError(f"could not download {filename}: " + "; ".join(errors))
