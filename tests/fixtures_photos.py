"""Photo-like full-size JPEGs from benchmarks/photo_data.py (the generator the loader benchmark
uses): `photo_files`, a session fixture of one 1800x2400 portrait, its 2400x1800 landscape
counterpart and one 1200x1600 photo, each in its own Kaggle-layout folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from photo_data import write_kaggle_photos  # noqa: E402

#: name -> (width, height) of the photos in `photo_files`.
PHOTO_SIZES: dict[str, tuple[int, int]] = {
    "portrait": (1800, 2400), "landscape": (2400, 1800), "medium": (1200, 1600),
}


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{name: path of one photo-like JPEG at quality 90} for the names of PHOTO_SIZES."""
    files = {}
    for seed, (name, size) in enumerate(PHOTO_SIZES.items()):
        root = write_kaggle_photos(tmp_path_factory.mktemp(f"photo-{name}"), 1, size=size, seed=seed)
        files[name] = next((root / "images").glob("*.jpg"))
    return files
