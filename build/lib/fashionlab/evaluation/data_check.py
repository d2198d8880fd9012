"""Is the data in use the data a checkpoint was trained on? Compares the identity stored in the
checkpoint (fingerprint, val/test item lists) with the identity of the data module built now."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fashionlab.errors import DataChangedError

log = logging.getLogger(__name__)

#: Items named per difference in messages.
SHOWN = 2


def _short(value: Any) -> str:
    return str(value)[:16]


def _first(items: list[Any]) -> str:
    shown = ", ".join(repr(i) for i in items[:SHOWN])
    return shown + (", …" if len(items) > SHOWN else "")


def split_difference(split: str, trained: Mapping[str, Any], now: Mapping[str, Any] | None) -> str | None:
    """One phrase naming how `split` changed (first differing items), or None when identical."""
    if now is None:
        return f"{split}: no such split now"
    if trained.get("sha256") == now.get("sha256"):
        return None
    old, new = list(trained.get("items", [])), list(now.get("items", []))
    now_set, old_set = set(new), set(old)
    gone = [i for i in old if i not in now_set]
    added = [i for i in new if i not in old_set]
    if not gone and not added:
        return f"{split}: the same {len(new)} items in another order"
    parts = []
    if gone:
        parts.append(f"{len(gone)} of its {len(old)} trained items gone (first: {_first(gone)})")
    if added:
        parts.append(f"{len(added)} new (first: {_first(added)})")
    return f"{split}: " + ", ".join(parts)


def identity_differences(trained: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Phrases naming each difference between two data identities (empty: the same data)."""
    out: list[str] = []
    splits_now = now.get("splits", {})
    for split, recorded in (trained.get("splits") or {}).items():
        phrase = split_difference(split, recorded, splits_now.get(split))
        if phrase:
            out.append(phrase)
    if trained.get("fingerprint") != now.get("fingerprint") and not out:
        out.append("val and test hold the same items; image contents, labels or the train split differ")
    return out


def check_data_identity(trained: Mapping[str, Any] | None, now: Mapping[str, Any], checkpoint: str | Path,
                        allow_changed: bool = False) -> dict[str, Any]:
    """Report fields on the data check; DataChangedError (one line) when the data differs from
    the checkpoint's training data and `allow_changed` is false."""
    fields: dict[str, Any] = {"data_fingerprint": now["fingerprint"]}
    if not trained:
        log.warning("%s stores no data identity (written before fashionlab recorded it): cannot check "
                    "that the data is the data it was trained on", checkpoint)
        return {**fields, "training_data_fingerprint": None, "data_identity_checked": False,
                "data_changed": None}
    fields.update(training_data_fingerprint=trained.get("fingerprint"), data_identity_checked=True)
    differences = identity_differences(trained, now)
    if not differences:
        return {**fields, "data_changed": False}
    summary = (f"the data differs from the data {checkpoint} was trained on (fingerprint "
               f"{_short(trained.get('fingerprint'))}… trained, {_short(now['fingerprint'])}… now): "
               + "; ".join(differences))
    if not allow_changed:
        raise DataChangedError(f"{summary}; its figures would not describe the held-out data (pass "
                               f"data.allow_changed=true to evaluate anyway)")
    log.warning("%s; evaluating anyway (data.allow_changed=true)", summary)
    return {**fields, "data_changed": True, "data_differences": differences}
