"""CIFAR-10 from the python-pickle release (``.tar.gz`` or extracted folder)."""

from __future__ import annotations

import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import torch

from viclab.data.download import download
from viclab.data.types import ImageData
from viclab.errors import ViclabError, ViclabWarning

URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
ARCHIVE = "cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise ViclabError(f"CIFAR-10 file {path} is missing; delete {path.parent} so it is re-extracted, "
                          f"or put the official {ARCHIVE} in {path.parent.parent}") from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ViclabError(f"cannot read CIFAR-10 file {path} ({e}); replace it with the official file") from None


def _ensure_folder(root: Path) -> Path:
    folder = root / FOLDER
    if (folder / "batches.meta").exists():
        return folder
    archive = root / ARCHIVE
    if not archive.exists():
        download(URLS, archive, MD5, hint=f"put {ARCHIVE} or an extracted {FOLDER}/ in {root} "
                                          "(or pass --data-dir / set VICLAB_DATA)")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(FOLDER + "/") and m.isfile()]
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ViclabError(f"cannot extract {archive} ({e}); delete it and run again to re-download") from None
    return folder


def load_cifar10(root: Path, split: str) -> ImageData:
    """Load a split; the extracted folder is validated by content, not checksum.

    Returns:
        :class:`ImageData` with ``images`` uint8 ``(N, 3, 32, 32)``.
    """
    folder = _ensure_folder(root)
    meta = _unpickle(folder / "batches.meta")
    names = [n.decode() for n in meta.get(b"label_names", [])]
    per_batch = meta.get(b"num_cases_per_batch")
    if len(names) != 10 or meta.get(b"num_vis") != 3072:
        raise ViclabError(f"{folder / 'batches.meta'} is not CIFAR-10 metadata; replace it with the official file")
    images, labels = [], []
    for name in SPLITS[split]:
        batch = _unpickle(folder / name)
        data, lab = batch.get(b"data"), batch.get(b"labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ViclabError(f"{folder / name}: 'data' is not a uint8 (N, 3072) array; replace the file")
        if lab is None or len(lab) != len(data) or (len(lab) and not 0 <= min(lab) <= max(lab) < 10):
            raise ViclabError(f"{folder / name}: labels are missing or outside 0..9; replace the file")
        if per_batch and len(data) > per_batch:
            raise ViclabError(f"{folder / name}: {len(data)} images, more than the {per_batch} in batches.meta")
        if per_batch and len(data) < per_batch:
            warnings.warn(f"{folder / name} holds {len(data)} of {per_batch} images: a partial CIFAR-10 split",
                          ViclabWarning, stacklevel=2)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(lab)
    return ImageData(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64),
                     tuple(names))
