"""Reader for the IDX format (MNIST family): big-endian header, then a dense array; gzip or raw."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from fashionlab.errors import DataFormatError

# Third byte of the magic number: element type.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: file not found") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{path}: corrupt gzip stream ({exc})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into an array of its declared shape."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataFormatError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype = _IDX_DTYPES.get(data[2])
    if dtype is None:
        raise DataFormatError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_len:
        raise DataFormatError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    payload = len(data) - header_len
    if payload != expected:
        raise DataFormatError(
            f"{path}: header declares shape {shape} ({expected} bytes) but the file holds "
            f"{payload} bytes of data"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file; gzip-compressed when the name ends in .gz (or compress=True)."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(
        array.shape, dtype=">u4"
    ).tobytes()
    body = np.ascontiguousarray(array).astype(_IDX_DTYPES[codes[dtype]]).tobytes()
    blob = header + body
    if compress if compress is not None else path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)
    return path
