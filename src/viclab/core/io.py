"""Atomic file writes: a crash mid-write never leaves a half-written file behind.

Every temporary file is named ``.<target name>.<random>.tmp`` beside its target, so the debris of a killed process
is recognisable and :func:`remove_stale_temp` can clear it when a run or study is continued.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from viclab.core.errors import ViclabError
from viclab.core.hashing import digest

TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename ``tmp_path`` onto ``path`` (in the same folder: atomic).

    If anything fails, the previous ``path`` is untouched and the temporary file is removed; a full disk or an
    unwritable folder becomes one :class:`ViclabError` line.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise ViclabError(f"cannot write {path} ({e.strerror or e}); choose a writable folder") from None
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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"the previous {path.name} is kept" if path.exists() else f"{path.name} was not written"
            raise ViclabError(f"no space left on the device while writing {path}; {kept}. Free some space "
                              "and run the same command again") from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    """``np.save`` atomically (through a file object: on a path, np.save would append ``.npy``)."""
    import numpy as np

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def remove_stale_temp(folder: str | os.PathLike, recursive: bool = False) -> None:
    """Delete the temporary files that killed writers left in ``folder`` (and below it if ``recursive``).

    Call it only where no other process writes (a run or study folder being continued).
    """
    if not Path(folder).is_dir():
        return
    for p in Path(folder).glob(("**/.*" if recursive else ".*") + TEMP_SUFFIX):
        if p.is_file() and p.name.count(".") >= 3:  # .<name>.<random>.tmp
            p.unlink(missing_ok=True)


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail now, before any work, if ``path`` cannot become a folder this process can write; nothing is created.

    ``path`` may exist (then it must be a writable folder) or not (then its nearest existing ancestor must be).

    Raises:
        ViclabError: ``path`` is a file, lies below a file, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ViclabError(f"{what} {path} is an existing file; give a folder path")
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ViclabError(f"{what} {path} lies below the file {probe}; give a folder path")
    try:  # a real write: os.access says yes to root even on read-only file systems
        fd, tmp = tempfile.mkstemp(prefix=".viclab-write-check.", suffix=TEMP_SUFFIX, dir=probe)
    except OSError as e:
        raise ViclabError(f"{what} {path} cannot be written ({probe}: {e.strerror or e}); "
                          "choose another folder") from None
    os.close(fd)
    os.unlink(tmp)
    return path


def tensor_file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a ``.safetensors`` file's content: every tensor (sorted by name: dtype, shape, bytes) and the
    metadata (sorted keys); not its bytes, as safetensors writes metadata keys in no fixed order."""
    from safetensors import safe_open

    def parts(f):
        yield json.dumps(f.metadata() or {}, sort_keys=True)
        for key in sorted(f.keys()):
            t = f.get_tensor(key)
            yield from (f"{key}|{t.dtype}|{tuple(t.shape)}|", t)

    with safe_open(str(path), framework="pt") as f:
        return digest(parts(f))
