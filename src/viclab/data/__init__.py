"""Datasets as in-memory uint8 tensors: a registry of loaders by name.

``load_dataset(name, split)`` returns :class:`ImageData` with ``(N, 3, H, W)``
uint8 images (single-channel sets repeated to RGB and padded to ``size``, spec §2).
``load_images`` also takes an image-folder path in place of a name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from viclab.data.cifar import load_cifar10
from viclab.data.download import resolve_data_dir
from viclab.data.folder import load_image_folder, load_split_folder
from viclab.data.mnist import load_idx_dataset
from viclab.data.types import ImageData
from viclab.errors import ViclabError

# name -> loader(root, split, size) -> ImageData
DATASETS: dict[str, Callable[[Path, str, int], ImageData]] = {
    "cifar10": lambda root, split, size: load_cifar10(root, split),
    "mnist": lambda root, split, size: load_idx_dataset(root, split, "mnist"),
    "fashion_mnist": lambda root, split, size: load_idx_dataset(root, split, "fashion_mnist"),
    # root/{train,test}/<class>/*: the data folder itself is the dataset.
    "folder": lambda root, split, size: load_split_folder(root, split, size),
}
SPLITS = ("train", "test")


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                 size: int = 32) -> ImageData:
    """Load a split of a registered dataset as 3-channel ``size x size`` uint8 images.

    Args:
        name: a key of :data:`DATASETS`; ``folder`` reads ``data_dir`` itself as an
            image-folder dataset (``train/`` and ``test/`` of class sub-folders).
        split: ``"train"`` or ``"test"``.
        data_dir: data root; ``None`` uses ``$VICLAB_DATA`` or the user cache dir.
        size: output side length.
    """
    if name not in DATASETS:
        raise ViclabError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or give an image folder")
    if split not in SPLITS:
        raise ViclabError(f"unknown split {split!r}; use 'train' or 'test'")
    data = DATASETS[name](resolve_data_dir(data_dir), split, size)
    return data.to_rgb(size)


def load_images(dataset: str, split: str, data_dir: str | os.PathLike | None = None, size: int = 32) -> ImageData:
    """A registered dataset's split, or an image folder given by its path.

    A folder with ``train/`` (and ``test/``) sub-folders is a dataset like ``folder``. A plain
    folder (class sub-folders, or images directly in it) has no split: it serves whole as a
    test split (anomalies, say); asking it for training images is an error, since a probe
    trained and tested on the same images would score 100%.
    """
    if dataset in DATASETS:
        return load_dataset(dataset, split, data_dir, size)
    path = Path(dataset).expanduser()
    if path.is_dir():
        if any((path / s).is_dir() for s in SPLITS):
            return load_dataset("folder", split, path, size)
        if split == "test":
            return load_image_folder(path, size).to_rgb(size)
        raise ViclabError(f"image folder {path} has no train/ and test/ sub-folders, so it holds no training "
                          f"images; to train or probe on it, use the layout {path}/{{train,test}}/<class>/<image>")
    if path.exists():
        raise ViclabError(f"{dataset} is a file, not a dataset; give a dataset name ({', '.join(DATASETS)}) or an "
                          "image folder")
    if os.sep in dataset or dataset.startswith((".", "~")):
        raise ViclabError(f"image folder {dataset} does not exist; check the path")
    raise ViclabError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}, or give an image folder")


__all__ = ["DATASETS", "ImageData", "load_dataset", "load_images", "resolve_data_dir"]
