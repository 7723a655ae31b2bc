"""Atomic file writes: a crash mid-write never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename ``tmp_path`` onto ``path``.

    The temporary file sits in the destination folder so the rename is atomic
    (same file system).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        # mkstemp makes 0600 (and some writers replace the file): give it the usual mode now.
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    """``np.save`` atomically (through a file object: on a path, np.save would append ``.npy``)."""
    import numpy as np

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)
