"""Atomic checkpoints: written to a temporary file, flushed, then renamed into place (and the
rename made durable), so a file under a checkpoint's name is always complete; a damaged one is
skipped when resuming. Loading never runs code from the file: ``weights_only=True`` with only
the RNG states' NumPy types allowed, and a checkpoint holding anything else is refused."""

from __future__ import annotations

import glob
import os
import pickle
import re
import tempfile
import zipfile
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
    _fsync_directory(directory)  # the rename itself survives a power loss
    for old in sorted(glob.glob(os.path.join(directory, "ckpt-*.pt")))[:-keep]:
        os.unlink(old)
    return path


def latest(directory: str) -> list[str]:
    """Checkpoint files in ``directory``, newest first (temporary files are never listed)."""
    files = [p for p in glob.glob(os.path.join(directory, "ckpt-*.pt"))
             if _NAME.search(os.path.basename(p))]
    return sorted(files, reverse=True)


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_globals() -> list[Any]:
    """What a checkpoint may hold besides tensors and Python's plain values: NumPy's generator
    state (``np.random.get_state()``: a uint32 ndarray in a tuple)."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    return [np.ndarray, np.dtype, _reconstruct, type(np.dtype(np.uint32))]


def _complete(path: str) -> bool:
    """Whether ``path`` is a whole archive as ``torch.save`` writes it (every member's checksum
    right): a file that is not was damaged; one that is but does not load was refused."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _load(path: str) -> dict[str, Any]:
    """Load one checkpoint without running code from it (``weights_only=True``; the RNG states'
    NumPy types allowed), onto the CPU: a run written on a GPU resumes on a machine without
    one (loading copies the tensors to the model's and optimizer's devices). A complete file
    holding anything else is refused with ``pickle.UnpicklingError``: a checkpoint from an
    untrusted source should not be trusted."""
    with torch.serialization.safe_globals(_safe_globals()):
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as error:
            if not _complete(path):
                raise
            raise pickle.UnpicklingError(
                f"checkpoint {path!r} is refused: it holds objects that a weights-only load, "
                f"which never runs code from the file, does not build. Load it with "
                f"torch.load(path, weights_only=False) only if you trust where it came from. "
                f"{error}") from None


def load_latest(directory: str) -> dict[str, Any] | None:
    """The newest checkpoint that loads; None if there is none. A damaged file is skipped (the
    previous one is used); one holding objects other than tensors, plain values and the RNG
    states is refused with an error, not skipped."""
    for path in latest(directory):
        try:
            return _load(path)
        except Exception:
            if _complete(path):
                raise  # refused, or whole but unreadable: an error, not a silent fallback
            continue  # a damaged file: fall back to the previous one
    return None
