"""Read the records of a W&B offline run file (`run-<id>.wandb`) for assertions in tests.

The file is a 7-byte header (":W&B", magic 0xBEE1, version 0) followed by a LevelDB-style log:
32 KiB blocks of chunks, each with a CRC32C (4 bytes), a little-endian length (2 bytes) and a
type (1 full, 2 first, 3 middle, 4 last), whose payloads join into protobuf `Record`s.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
CHUNK_HEADER = 7
FILE_HEADER = b":W&B\xe1\xbe\x00"


def read_records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    if not data.startswith(FILE_HEADER):
        raise ValueError(f"{path}: not a W&B run file")
    records, pending, pos = [], b"", len(FILE_HEADER)
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if kind == 0 and length == 0:
            pos += room
            continue
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history_and_summary(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Logged history rows and the final summary of an offline run."""
    rows, summary = [], {}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return rows, summary
