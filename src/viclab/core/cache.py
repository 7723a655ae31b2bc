"""The one content-keyed cache store: decoded images, decoded sound clips and encoders' features.

One root (``$VICLAB_CACHE``, else ``$XDG_CACHE_HOME/viclab``, i.e. ~/.cache/viclab), one folder and one
version per namespace, keys hashed from everything that can change the cached numbers, entries
written atomically, and an entry that cannot be read or has the wrong shape recomputed, never used.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.hashing import digest
from viclab.core.io import atomic_save_npy, atomic_write_text

# Bump a namespace's version when the way its entries are computed changes.
CACHE_VERSIONS = {
    "images": "1",  # decoding or resizing of image files
    "sound": "2",  # decoding or cutting of sound files (2: non-finite samples are refused)
    "features": "3",  # encoders' representations (3: channels-last encoding)
}
KEY_CHARS = 32  # 128 bits of the SHA-256 key name an entry


def cache_root() -> Path:
    """``$VICLAB_CACHE``, else ``$XDG_CACHE_HOME/viclab`` (~/.cache/viclab)."""
    if os.environ.get("VICLAB_CACHE"):
        return Path(os.environ["VICLAB_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "viclab"


@dataclass(frozen=True)
class CacheStore:
    """One ``namespace`` of the cache (``images``, ``sound``, ``features``): ``.npy`` entries named by a content key
    in ``folder`` (default :meth:`default_folder`); ``warn``: report an unusable entry (a :class:`ViclabWarning`)."""

    namespace: str
    folder: Path | None = None
    warn: bool = False

    def default_folder(self) -> Path:
        """``<root>/<namespace>``; features sit in ``$VICLAB_CACHE`` itself when it is set (where they always
        have: a cache filled before the store existed is still found)."""
        if self.namespace == "features" and os.environ.get("VICLAB_CACHE"):
            return cache_root()
        return cache_root() / self.namespace

    def path(self, fields: Sequence[str], lines: Iterable[str] = (), prefix: str = "") -> Path:
        """The entry for a key: SHA-256 of the namespace's version and ``fields`` joined by ``|``, then ``lines``
        (e.g. one per file: its path, label and content hash)."""
        key = digest(["|".join([CACHE_VERSIONS[self.namespace], *fields]), *lines])[:KEY_CHARS]
        return Path(self.folder or self.default_folder()) / f"{prefix}{key}.npy"

    def read(self, path: Path, shape: tuple[int, ...] | None = None, dtype: np.dtype | type | None = None,
             valid: Callable[[np.ndarray], bool] | None = None) -> np.ndarray | None:
        """The entry at ``path`` (from :meth:`path`), or ``None`` when it is absent, unreadable, or not of ``shape``
        and ``dtype`` (``None``: any) or not ``valid`` (a further check, e.g. all finite): recompute it then."""
        if not path.exists():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            self._report(f"cached {self.namespace} {path} are damaged ({e}); recomputing them")
            return None
        if (shape is not None and array.shape != shape) or (dtype is not None and array.dtype != dtype):
            self._report(f"cached {self.namespace} {path} hold {array.dtype} {array.shape}, not "
                         f"{np.dtype(dtype or array.dtype)} {shape or array.shape}; recomputing them")
            return None
        return array if valid is None or valid(array) else None

    def read_text(self, path: Path) -> str | None:
        """A side file of an entry (e.g. ``.counts``), or ``None`` when absent or unreadable."""
        try:
            return path.read_text()
        except (OSError, ValueError):
            return None

    def read_or_compute(self, path: Path, compute: Callable[[], np.ndarray], shape: tuple[int, ...] | None = None,
                        dtype: np.dtype | type | None = None, *, unwritable: Callable[[Exception], None]) -> np.ndarray:
        """The entry at ``path`` if it is usable (:meth:`read`), else ``compute()`` written there; ``unwritable`` is
        called with the error when it cannot be written."""
        array = self.read(path, shape, dtype)
        if array is None:
            array = compute()
            try:
                self.write(path, array)
            except (OSError, ViclabError) as e:
                unwritable(e)
        return array

    @staticmethod
    def write(path: Path, array: np.ndarray, side: dict[str, str] | None = None) -> None:
        """Write an entry (and its ``side`` files, ``{suffix: text}``) atomically.

        Raises:
            ViclabError: the folder cannot be written (callers decide whether that matters).
        """
        atomic_save_npy(path, array)
        for suffix, text in (side or {}).items():
            atomic_write_text(path.with_suffix(suffix), text)

    def _report(self, message: str) -> None:
        if self.warn:
            warnings.warn(message, ViclabWarning, stacklevel=5)  # the caller of read_or_compute's caller


__all__ = ["CACHE_VERSIONS", "CacheStore", "cache_root"]
