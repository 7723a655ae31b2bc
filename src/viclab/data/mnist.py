"""MNIST and Fashion-MNIST from the official IDX ``.gz`` files (torchvision's layout)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from viclab.core.errors import ViclabError
from viclab.data.download import download, matches_md5
from viclab.data.types import ImageData

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

SOURCES = {
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
    """Load ``name`` (``mnist`` or ``fashion_mnist``). Files whose MD5 is the publisher's are
    accepted as they are (fast path); other copies are validated by content.

    Returns:
        :class:`ImageData` with ``images`` uint8 ``(N, 1, 28, 28)``.
    """
    src = SOURCES[name]
    raw = root / src["folder"] / "raw"
    paths = []
    for fname in FILES[split]:
        path = raw / fname
        if not path.exists():
            download([m + fname for m in src["mirrors"]], path, src["md5"][fname],
                     hint=f"put the official {' and '.join(FILES[split])} in {raw} "
                          "(or pass --data-dir / set VICLAB_DATA)")
        paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if not all(matches_md5(p, src["md5"][p.name]) for p in paths):  # the publisher's files are valid as they are
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ViclabError(f"{paths[0].name} and {paths[1].name} in {raw} do not match (images {images.shape}, "
                              f"labels {labels.shape}); replace them with the official files")
        if len(labels) and labels.max() >= len(src["classes"]):
            raise ViclabError(f"{paths[1]}: label {labels.max()} is out of range; replace the file")
    return ImageData(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                     src["classes"])
