"""Checkpoint files: atomic writes, and last.ckpt stored once when it is best.ckpt.

Atomic writes: a temporary file next to the destination, fsync, then os.replace.

Lightning's TorchCheckpointIO (2.6) serialises into memory and writes through an fsspec
transaction whose temporary file lives in the system temp folder; committing it is a
`shutil.move`, which becomes copy-then-delete when that folder is on another filesystem, so a kill
can still leave a truncated `last.ckpt` (and an orphaned temporary file). Writing the temporary
file in the destination's own folder makes the final rename atomic on POSIX and Windows.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

TMP_SUFFIX = ".tmp"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save(obj, path)` such that `path` holds either its old content or all of the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)  # left by a process killed while writing
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local writes are atomic (remote URLs keep Lightning's behaviour)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            atomic_torch_save(checkpoint, path)


class LinkedLastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is the latest epoch, stored once.

    Lightning's `save_last=True` writes last.ckpt only when a top-k checkpoint is written at the
    same step: with `save_top_k: 1` it stays at the best epoch, and a resume would repeat the
    epochs after it. Here last.ckpt follows every validation (every epoch). When best.ckpt was
    saved at the same step, last.ckpt becomes a hard link to it (one file on disk under two names,
    each a complete checkpoint that loads and resumes as before) instead of a second copy. A later,
    non-best epoch writes last.ckpt anew; since every write replaces the file atomically
    (AtomicCheckpointIO), that breaks the link and leaves best.ckpt as it was. Where hard links
    are not supported (or the path is remote), last.ckpt is written as a copy."""

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key, so that its state in checkpoints written with Lightning's class
        (and theirs in these) is restored on resume."""
        return "ModelCheckpoint" + super().state_key.removeprefix(type(self).__qualname__)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def _save_last_if_stale(self, trainer: Any) -> None:
        """Write last.ckpt when Lightning did not at this step (no top-k save)."""
        if (self.save_last is True and not self._should_skip_saving_checkpoint(trainer)
                and self._last_global_step_saved != trainer.global_step):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
        best = self._last_checkpoint_saved
        saved_now = (self.save_last is True and best and self._last_global_step_saved == trainer.global_step
                     and "://" not in str(best) and Path(best).is_file())
        if not saved_now:
            super()._save_last_checkpoint(trainer, monitor_candidates)
            return
        filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        if filepath == best or not self._hard_link(trainer, best, filepath):
            super()._save_last_checkpoint(trainer, monitor_candidates)
            return
        previous, self.last_model_path = self.last_model_path, filepath
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    @staticmethod
    def _hard_link(trainer: Any, target: str, link: str) -> bool:
        """`link` as a hard link to `target`, replaced atomically (rank 0 links; every rank learns
        whether it worked)."""
        linked = True
        if trainer.is_global_zero:
            tmp = Path(link).with_name(f".{Path(link).name}.link{TMP_SUFFIX}")
            try:
                tmp.unlink(missing_ok=True)
                os.link(target, tmp)
                os.replace(tmp, link)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                linked = False
        return bool(trainer.strategy.broadcast(linked))
