"""Read the records of a W&B offline run file (`run-<id>.wandb`) for assertions in tests.

The file is a 7-byte header (":W&B", magic 0xBEE1, version 0) followed by a LevelDB-style log:
32 KiB blocks of chunks, each with a CRC32C (4 bytes), a little-endian length (2 bytes) and a
type (1 full, 2 first, 3 middle, 4 last), whose payloads join into protobuf `Record`s.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
CHUNK_HEADER = 7
FILE_HEADER = b":W&B\xe1\xbe\x00"


def flush_wandb() -> None:
    """Wait until W&B has written every finished run of this process to disk.

    `wandb.finish()` returns before wandb's service has closed the run's stream (the close is a
    message it does not wait for), so a run's last records, the exit record among them, may still
    sit in the service's write buffer; under load they reach the file a moment later. At process
    exit wandb's own atexit hook waits for them; in-process, `wandb.teardown()` does (it shuts the
    service down; the next `wandb.init` starts a new one)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is None:
        wandb.teardown()


def read_records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    """Every record of an offline run file (after `flush_wandb`: complete for runs this process
    finished)."""
    flush_wandb()
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


def artifacts(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The artifacts an offline run recorded (logged, or used: `use_after_commit`), optionally of
    one type: name, type, aliases, metadata, use_after_commit and files {name in artifact: local path}."""
    found = []
    for record in read_records(path):
        if record.WhichOneof("record_type") != "artifact":
            continue
        art = record.artifact
        if kind is not None and art.type != kind:
            continue
        found.append({"name": art.name, "type": art.type, "aliases": list(art.aliases),
                      "metadata": json.loads(art.metadata) if art.metadata else {},
                      "use_after_commit": art.use_after_commit, "digest": art.digest,
                      "files": {entry.path: entry.local_path for entry in art.manifest.contents}})
    return found


def run_settings(path: str | Path) -> dict[str, Any]:
    """The run's group, job type, tags and config (the last of each the file records)."""
    info: dict[str, Any] = {"config": {}}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            info.update(id=run.run_id, group=run.run_group, job_type=run.job_type, name=run.display_name,
                        tags=list(run.tags))
            for item in run.config.update:
                info["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                info["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return info


def logged_table(run_file: str | Path, summary: dict[str, Any], key: str) -> dict[str, Any]:
    """A logged wandb.Table's JSON (columns, data), found through the summary's file path."""
    return json.loads((Path(run_file).parent / "files" / summary[f"{key}/path"]).read_text())


def named_files(path: str | Path) -> list[str]:
    """Every local file an offline run's records name for `wandb sync` to upload: artifact entries'
    local paths (tables, images, checkpoints, folders) and manifests written to a file."""
    named = []
    for record in read_records(path):
        if record.WhichOneof("record_type") != "artifact":
            continue
        manifest = record.artifact.manifest
        if manifest.manifest_file_path:
            named.append(manifest.manifest_file_path)
        named += [entry.local_path for entry in manifest.contents if entry.local_path]
    return named
