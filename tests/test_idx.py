"""IDX reader on generated files: round trip, gzip and raw, and clear errors for broken files."""

import gzip

import numpy as np
import pytest

from fashionlab.data.readers.idx import read_idx, write_idx
from fashionlab.errors import DataFormatError


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_round_trip(tmp_path, name):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(path), array)


def test_header_is_the_published_layout(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.array([3, 1, 4], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_truncated_file_names_file_and_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    blob = bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(100)
    path.write_bytes(gzip.compress(blob))
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz.*\(5, 28, 28\)"):
        read_idx(path)


def test_bad_magic(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"PK\x03\x04" + bytes(10))
    with pytest.raises(DataFormatError, match=r"x\.idx: not an IDX file"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "y.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 2]))[:-6])
    with pytest.raises(DataFormatError, match=r"y\.gz: corrupt gzip"):
        read_idx(path)
