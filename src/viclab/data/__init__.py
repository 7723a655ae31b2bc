"""Datasets as in-memory uint8 tensors: a registry of loaders by name.

``load_dataset(name, split)`` returns :class:`ImageData` with ``(N, 3, H, W)``
uint8 images (single-channel sets repeated to RGB and padded to ``size``, spec §2).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from viclab.data.cifar import load_cifar10
from viclab.data.download import resolve_data_dir
from viclab.data.folder import load_image_folder
from viclab.data.mnist import load_idx_dataset
from viclab.data.types import ImageData
from viclab.errors import ViclabError

# name -> loader(root, split, size) -> ImageData
DATASETS: dict[str, Callable[[Path, str, int], ImageData]] = {
    "cifar10": lambda root, split, size: load_cifar10(root, split),
    "mnist": lambda root, split, size: load_idx_dataset(root, split, "mnist"),
    "fashion_mnist": lambda root, split, size: load_idx_dataset(root, split, "fashion_mnist"),
    # root/<split>/<class>/* when split folders exist, else root/<class>/* for every split.
    "folder": lambda root, split, size: load_image_folder(
        root / split if (root / split).is_dir() else root, size),
}


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                 size: int = 32) -> ImageData:
    """Load a split of a registered dataset as 3-channel ``size x size`` uint8 images.

    Args:
        name: a key of :data:`DATASETS`; ``folder`` reads ``data_dir`` itself as an
            image folder.
        split: ``"train"`` or ``"test"``.
        data_dir: data root; ``None`` uses ``$VICLAB_DATA`` or the user cache dir.
        size: output side length.
    """
    if name not in DATASETS:
        raise ViclabError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise ViclabError(f"unknown split {split!r}; use 'train' or 'test'")
    data = DATASETS[name](resolve_data_dir(data_dir), split, size)
    return data.to_rgb(size)


__all__ = ["DATASETS", "ImageData", "load_dataset", "resolve_data_dir"]
