"""Atomic checkpoints: written to a temporary file, flushed, then renamed into place, so a file
under a checkpoint's name is always complete; a damaged one is skipped when resuming."""

from __future__ import annotations

import glob
import os
import re
import tempfile
from typing import Any

import torch

__all__ = ["save_atomic", "latest", "load_latest"]

_NAME = re.compile(r"ckpt-(\d{10})\.pt$")


def save_atomic(state: dict[str, Any], directory: str, step: int, keep: int = 2) -> str:
    """Write ``state`` as ``directory/ckpt-<step>.pt`` atomically; keep the newest ``keep``."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ckpt-{step:010d}.pt")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-ckpt-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for old in sorted(glob.glob(os.path.join(directory, "ckpt-*.pt")))[:-keep]:
        os.unlink(old)
    return path


def latest(directory: str) -> list[str]:
    """Checkpoint files in ``directory``, newest first (temporary files are never listed)."""
    files = [p for p in glob.glob(os.path.join(directory, "ckpt-*.pt"))
             if _NAME.search(os.path.basename(p))]
    return sorted(files, reverse=True)


def load_latest(directory: str) -> dict[str, Any] | None:
    """The newest checkpoint that loads; None if there is none."""
    for path in latest(directory):
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # a damaged file: fall back to the previous one
            continue
    return None
