"""Where data lives, and checksummed downloads from the publishers' locations."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from viclab.core.errors import ViclabError
from viclab.core.hashing import file_digest

LARGE_DOWNLOAD = 1_000_000_000  # bytes: a larger download needs the opt-in below
DOWNLOAD_OPT_IN = "VICLAB_DOWNLOAD"


def allow_download(size: int, what: str, fix: str) -> None:
    """Refuse to download more than :data:`LARGE_DOWNLOAD` bytes unless ``$VICLAB_DOWNLOAD=1``: a mistyped
    data folder must not start a many-gigabyte download unasked.

    Args:
        size: the bytes the download would fetch.
        what: the data and the folder searched, e.g. ``the mimii set is not in /data (no /data/mimii)``.
        fix: the other way out, e.g. ``give the folder that holds it (--data-dir)``.
    """
    if size > LARGE_DOWNLOAD and os.environ.get(DOWNLOAD_OPT_IN) != "1":
        raise ViclabError(f"{what}, and downloading it means {size / 1e9:.1f} GB; set {DOWNLOAD_OPT_IN}=1 to download "
                          f"it, or {fix}")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$VICLAB_DATA``, else ``$XDG_CACHE_HOME/viclab`` (~/.cache/viclab)."""
    given = data_dir or os.environ.get("VICLAB_DATA")
    if given:
        return Path(given).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "viclab"


_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def matches_md5(path: Path, md5: str) -> bool:
    """Whether ``path`` is byte-identical to the file the publisher's ``md5`` describes (hashed once per
    path, size and modification time in a process)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MD5_CACHE:
        _MD5_CACHE[key] = file_digest(path, "md5", None)  # the publisher's checksum, not viclab's content hash
    return _MD5_CACHE[key] == md5


def download(urls: list[str], dest: Path, md5: str, hint: str, algorithm: str = "md5") -> Path:
    """Fetch ``dest`` from the first of ``urls`` that works and verify its published ``md5`` (or ``algorithm``'s
    digest). The file is written to ``dest.part`` and renamed only once its checksum matches, so an interrupted or
    corrupt download never looks complete; ``hint`` tells the user where to put files when no URL can be reached.
    """
    from tqdm import tqdm

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ViclabError(f"cannot create data directory {dest.parent} ({e.strerror}); "
                          "pass --data-dir or set VICLAB_DATA to a writable folder") from None
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(part, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                    while block := r.read(1 << 16):
                        f.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
        else:
            got = file_digest(part, algorithm, None)
            if got == md5:
                shutil.move(part, dest)
                return dest
            errors.append(f"{url}: {algorithm} {got} != published {md5}")
        part.unlink(missing_ok=True)
    raise ViclabError(f"cannot download {dest.name} ({'; '.join(errors)}); {hint}")
