"""CIFAR-10 from the python-pickle release (``.tar.gz`` or extracted folder)."""

from __future__ import annotations

import pickle
import tarfile
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from viclab.core.errors import ViclabError, ViclabWarning
from viclab.data.download import download, matches_md5
from viclab.data.types import ImageData

URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
ARCHIVE = "cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# The publisher's files inside the archive (the same table as torchvision's CIFAR10).
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

# Everything a CIFAR-10 pickle needs: NumPy's array reconstruction (numpy 1 and 2 module
# names) and the byte-string helper of protocol-2 pickles written by Python 3. A pickle that
# asks for anything else (os.system in a __reduce__, say) is refused before it runs.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR-10 file never holds")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise ViclabError(f"CIFAR-10 file {path} is missing; copy it from the official {ARCHIVE}, or delete "
                          f"{path.parent} and put the archive in {path.parent.parent}") from None
    except Exception as e:  # a damaged pickle can raise almost anything; none of it is the user's fault
        raise ViclabError(f"cannot read CIFAR-10 file {path} ({type(e).__name__}: {e}); replace it with the "
                          "official file") from None
    if not isinstance(obj, dict):
        raise ViclabError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 batch; replace it with the "
                          "official file")
    return obj


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's regular files under ``cifar-10-batches-py/``, refusing any path that could
    leave the target folder (what ``filter="data"`` does on Python >= 3.11.4)."""
    members = []
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if not m.isfile() or p.parts[:1] != (FOLDER,):
            continue
        if p.is_absolute() or ".." in p.parts:
            raise tarfile.TarError(f"unsafe member path {m.name!r}")
        members.append(m)
    return members


def _extract(archive: Path, root: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        members = _safe_members(tar)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and 3.8.17+ backports)
            tar.extractall(root, members=members, filter="data")
        else:  # 3.11.0-3.11.3: no filter argument; _safe_members already checked every path
            tar.extractall(root, members=members)


def _ensure_folder(root: Path) -> Path:
    folder = root / FOLDER
    if (folder / "batches.meta").exists():
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        raise ViclabError(f"{folder} has no batches.meta (the class names); copy it from the official {ARCHIVE} "
                          "into that folder")
    archive = root / ARCHIVE
    if not archive.exists():
        download(URLS, archive, MD5, hint=f"put {ARCHIVE} or an extracted {FOLDER}/ in {root} "
                                          "(or pass --data-dir / set VICLAB_DATA)")
    try:
        _extract(archive, root)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ViclabError(f"cannot extract {archive} ({e}); delete it and run again to re-download") from None
    return folder


def _check_batch(path: Path, batch: dict, per_batch: int | None) -> tuple[np.ndarray, list[int]]:
    """Validate one batch's content (shapes, label type and range, count)."""
    data, lab = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ViclabError(f"{path}: 'data' is not a uint8 (N, 3072) array; replace the file")
    if not isinstance(lab, list | np.ndarray) or len(lab) != len(data) \
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in lab) \
            or (len(lab) and not 0 <= min(lab) <= max(lab) < 10):
        raise ViclabError(f"{path}: labels are missing, not integers, or outside 0..9; replace the file")
    if per_batch and len(data) > per_batch:
        raise ViclabError(f"{path}: {len(data)} images, more than the {per_batch} in batches.meta")
    if per_batch and len(data) < per_batch:
        warnings.warn(f"{path} holds {len(data)} of {per_batch} images: a partial CIFAR-10 split",
                      ViclabWarning, stacklevel=3)
    return data, [int(v) for v in lab]


def load_cifar10(root: Path, split: str) -> ImageData:
    """Load a split. A file whose MD5 is the publisher's is accepted as it is (fast path);
    any other copy is validated by content (shapes, label range, counts).

    Returns:
        :class:`ImageData` with ``images`` uint8 ``(N, 3, 32, 32)``.
    """
    folder = _ensure_folder(root)
    meta_path = folder / "batches.meta"
    meta = _unpickle(meta_path)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    per_batch = meta.get(b"num_cases_per_batch")
    if len(names) != 10 or meta.get(b"num_vis") != 3072 or not isinstance(per_batch, int):
        raise ViclabError(f"{meta_path} is not CIFAR-10 metadata; replace it with the official file")
    images, labels = [], []
    for name in SPLITS[split]:
        path = folder / name
        batch = _unpickle(path)
        if matches_md5(path, FILE_MD5[name]):  # the publisher's own file: complete and valid
            data, lab = batch[b"data"], batch[b"labels"]
        else:
            data, lab = _check_batch(path, batch, per_batch)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(lab)
    return ImageData(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64),
                     tuple(names))
