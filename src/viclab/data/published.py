"""The published image datasets, from their publishers' files: CIFAR-10 (the python-pickle release, ``.tar.gz`` or
extracted folder) and MNIST and Fashion-MNIST (the official IDX ``.gz`` files, torchvision's layout)."""

from __future__ import annotations

import gzip
import pickle
import tarfile
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from viclab.core.errors import ViclabError, ViclabWarning
from viclab.data.download import download, matches_md5
from viclab.data.types import ImageData

CIFAR_URLS = ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# The publisher's files inside the archive (the same table as torchvision's CIFAR10).
CIFAR_FILE_MD5 = {
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
        raise ViclabError(f"CIFAR-10 file {path} is missing; copy it from the official {CIFAR_ARCHIVE}, or delete "
                          f"{path.parent} and put the archive in {path.parent.parent}") from None
    except Exception as e:  # a damaged pickle can raise almost anything; none of it is the user's fault
        raise ViclabError(f"cannot read CIFAR-10 file {path} ({type(e).__name__}: {e}); replace it with the "
                          "official file") from None
    if not isinstance(obj, dict):
        raise ViclabError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 batch; replace it with the "
                          "official file")
    return obj


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The regular files under ``cifar-10-batches-py/``, refusing any path that could leave the target folder."""
    members = []
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if not m.isfile() or p.parts[:1] != (CIFAR_FOLDER,):
            continue
        if p.is_absolute() or ".." in p.parts:
            raise tarfile.TarError(f"unsafe member path {m.name!r}")
        members.append(m)
    return members


def _ensure_folder(root: Path) -> Path:
    folder = root / CIFAR_FOLDER
    if (folder / "batches.meta").exists():
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        raise ViclabError(f"{folder} has no batches.meta (the class names); copy it from the official {CIFAR_ARCHIVE} "
                          "into that folder")
    archive = root / CIFAR_ARCHIVE
    if not archive.exists():
        download(CIFAR_URLS, archive, CIFAR_MD5, hint=f"put {CIFAR_ARCHIVE} or an extracted {CIFAR_FOLDER}/ in {root} "
                                                      "(or pass --data-dir / set VICLAB_DATA)")
    # Python >= 3.11.4 filters too; 3.11.0-3.11.3 have no filter argument, and _safe_members checks every path.
    checks = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, members=_safe_members(tar), **checks)
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
    """A split as :class:`ImageData` with ``images`` uint8 ``(N, 3, 32, 32)``. A file whose CIFAR_MD5 is the publisher's
    is accepted as it is (fast path); any other copy is validated by content (shapes, label range, counts)."""
    folder = _ensure_folder(root)
    meta_path = folder / "batches.meta"
    meta = _unpickle(meta_path)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(b"label_names", [])]
    per_batch = meta.get(b"num_cases_per_batch")
    if len(names) != 10 or meta.get(b"num_vis") != 3072 or not isinstance(per_batch, int):
        raise ViclabError(f"{meta_path} is not CIFAR-10 metadata; replace it with the official file")
    images, labels = [], []
    for name in CIFAR_SPLITS[split]:
        path = folder / name
        batch = _unpickle(path)
        if matches_md5(path, CIFAR_FILE_MD5[name]):  # the publisher's own file: complete and valid
            data, lab = batch[b"data"], batch[b"labels"]
        else:
            data, lab = _check_batch(path, batch, per_batch)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.extend(lab)
    return ImageData(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64), tuple(names))


IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

IDX_SOURCES = {
    "mnist": {
        "folder": "MNIST",
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "classes": tuple(str(i) for i in range(10)),
    },
    "fashion_mnist": {
        "folder": "FashionMNIST",
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                    "Bag", "Ankle boot"),
    },
}


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes; validates magic and size."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; a bad deflate stream is not
        raise ViclabError(f"cannot read {path} ({type(e).__name__}: {e}); the file is damaged, replace it with "
                          "the official file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise ViclabError(f"{path} is not a uint8 IDX file; replace it with the official file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(shape)):
        raise ViclabError(f"{path}: header says {shape} but holds {len(raw) - start} bytes; the file is cut short")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(shape)


def load_idx_dataset(root: Path, split: str, name: str) -> ImageData:
    """A split of ``name`` (``mnist`` or ``fashion_mnist``) as :class:`ImageData` with ``images`` uint8
    ``(N, 1, 28, 28)``. Files whose MD5 is the publisher's are accepted as they are (fast path); other copies are
    validated by content."""
    src = IDX_SOURCES[name]
    raw = root / src["folder"] / "raw"
    paths = [raw / fname for fname in IDX_FILES[split]]
    for path in paths:
        if not path.exists():
            download([m + path.name for m in src["mirrors"]], path, src["md5"][path.name], hint=f"put the official "
                     f"{' and '.join(IDX_FILES[split])} in {raw} (or pass --data-dir / set VICLAB_DATA)")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if not all(matches_md5(p, src["md5"][p.name]) for p in paths):  # the publisher's files are valid as they are
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ViclabError(f"{paths[0].name} and {paths[1].name} in {raw} do not match (images {images.shape}, "
                              f"labels {labels.shape}); replace them with the official files")
        if len(labels) and labels.max() >= len(src["classes"]):
            raise ViclabError(f"{paths[1]}: label {labels.max()} is out of range; replace the file")
    return ImageData(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                     src["classes"])
