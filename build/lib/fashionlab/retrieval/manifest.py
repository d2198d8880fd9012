"""manifest.json: ties an index and its embeddings to the checkpoint and the data they came from."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fashionlab.errors import DataNotFoundError, ManifestMismatchError
from fashionlab.fileio import write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REQUIRED = ("checkpoint", "checkpoint_sha256", "data_fingerprint", "index", "embedding_dim",
            "gallery_split", "query_split", "num_items", "tasks", "created")


def make_manifest(*, checkpoint: str, checkpoint_sha256: str, data_fingerprint: str,
                  index: Mapping[str, Any], embedding_dim: int, gallery_split: str, query_split: str,
                  num_items: int, tasks: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "checkpoint": str(checkpoint), "checkpoint_sha256": checkpoint_sha256,
        "data_fingerprint": data_fingerprint, "index": dict(index), "embedding_dim": int(embedding_dim),
        "gallery_split": gallery_split, "query_split": query_split, "num_items": int(num_items),
        "tasks": dict(tasks), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    return write_json(Path(folder) / MANIFEST, manifest)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataNotFoundError(f"{folder} is not an evaluation directory: {path} does not exist "
                                "(create it with `python evaluate.py ckpt_path=...`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestMismatchError(f"{path}: not valid JSON ({exc})") from exc
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ManifestMismatchError(f"{path}: missing key(s) {', '.join(missing)}")
    return manifest


def check_manifest(manifest: Mapping[str, Any], where: str | Path, checkpoint_sha256: str | None = None,
                   data_fingerprint: str | None = None) -> None:
    """Raise ManifestMismatchError when the index was built from another checkpoint or data (an
    index evaluated with data.allow_changed=true on this training data's checkpoint passes, with a
    warning)."""
    if checkpoint_sha256 is not None and manifest["checkpoint_sha256"] != checkpoint_sha256:
        raise ManifestMismatchError(
            f"{where}: index built from checkpoint {manifest['checkpoint']} "
            f"(sha256 {manifest['checkpoint_sha256'][:12]}…), but the model in use has sha256 "
            f"{checkpoint_sha256[:12]}…; rebuild it with `python evaluate.py ckpt_path=<checkpoint>`")
    if data_fingerprint is None or manifest["data_fingerprint"] == data_fingerprint:
        return
    if manifest.get("data_changed") and manifest.get("training_data_fingerprint") == data_fingerprint:
        log.warning("%s: index built from data (fingerprint %s…) other than the checkpoint's training "
                    "data (%s…), accepted at evaluation with data.allow_changed=true", where,
                    manifest["data_fingerprint"][:12], data_fingerprint[:12])
        return
    raise ManifestMismatchError(
        f"{where}: index built from data with fingerprint {manifest['data_fingerprint'][:12]}…, "
        f"but the expected data (the checkpoint's training data) has {data_fingerprint[:12]}…; "
        f"rebuild it with `python evaluate.py ckpt_path=<checkpoint>`")
