"""Datasets in memory: registries of image (:data:`DATASETS`) and sound (:data:`SOUND_DATASETS`) loaders by name.

Images load as ``(N, 3, H, W)`` uint8 (:func:`load_images`), sounds as clips (:func:`load_sound`) that reach the
networks as ``(N, 1, n_mels, frames)`` float32 log-mel spectrograms (:func:`load_inputs`). Every :class:`ImageData`
says which it holds (``modality``, decided once by :func:`dataset_modality`) and carries its rows' files, windows
and attributes (machine ID, speaker).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from viclab.config import Config
from viclab.core.context import QUIET, Context
from viclab.core.errors import ViclabError
from viclab.data.download import resolve_data_dir
from viclab.data.folder import EXTENSIONS, load_image_folder, load_split_folder
from viclab.data.published import load_cifar10, load_idx_dataset
from viclab.data.sounds import SOUND_DATASETS, SoundData, load_sound, sound_files, spectrograms
from viclab.data.types import MODALITIES, ImageData

DATASETS: dict[str, Callable[[Path, str, int], ImageData]] = {
    "cifar10": lambda root, split, size: load_cifar10(root, split),
    "mnist": lambda root, split, size: load_idx_dataset(root, split, "mnist"),
    "fashion_mnist": lambda root, split, size: load_idx_dataset(root, split, "fashion_mnist"),
    # root/{train,val,test}/<class>/*: the data folder itself is the dataset.
    "folder": lambda root, split, size: load_split_folder(root, split, size),
}
SPLITS = ("train", "test")


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
                 size: int = 32) -> ImageData:
    """Load a split of a registered dataset as 3-channel ``size x size`` uint8 images.

    Args:
        name: a key of :data:`DATASETS`; ``folder`` reads ``data_dir`` itself as an image-folder dataset
            (``train/`` and ``test/`` of class sub-folders).
        split: ``"train"`` or ``"test"``.
        data_dir: data root; ``None`` uses ``$VICLAB_DATA`` or the user cache dir.
        size: output side length.
    """
    if name not in DATASETS:
        raise unknown_dataset(name)
    if split not in SPLITS and not (name == "folder" and split == "val"):  # a folder's val/ selects probes
        raise ViclabError(f"unknown split {split!r}; use 'train' or 'test'")
    data = DATASETS[name](resolve_data_dir(data_dir), split, size)
    if data.files is None:  # a registered set's files hold many images: each row is named by its index
        data = dataclasses.replace(data, files=np.array([f"{name}:{split}:{i}" for i in range(len(data))]))
    return data.to_rgb(size)


def unknown_dataset(name: str) -> ViclabError:
    """The error for a ``--dataset`` that is neither registered nor a folder: every image and sound dataset named."""
    return ViclabError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)} (images), "
                       f"{', '.join(SOUND_DATASETS)} (sound), or give an image folder or a sound folder")


def load_images(dataset: str, split: str, data_dir: str | os.PathLike | None = None, size: int = 32) -> ImageData:
    """A registered dataset's split, or an image folder given by its path.

    A folder with ``train/`` (and ``val/`` or ``test/``) sub-folders is a dataset like ``folder``. A plain folder
    (class sub-folders, or images directly in it) has no split: it serves whole as a test split (anomalies, say);
    asking it for training images is an error, since a probe trained and tested on the same images would score 100%.
    """
    if dataset in DATASETS:
        return load_dataset(dataset, split, data_dir, size)
    path = Path(dataset).expanduser()
    if path.is_dir():
        if any((path / s).is_dir() for s in ("train", "val", "test")):
            return load_dataset("folder", split, path, size)
        if split == "test":
            return load_image_folder(path, size).to_rgb(size)
        raise ViclabError(f"image folder {path} has no train/ and test/ (or val/) sub-folders, so it holds no "
                          f"training images; to train or probe on it, use the layout "
                          f"{path}/{{train,val,test}}/<class>/<image> (viclab split makes it)")
    if path.exists():
        raise ViclabError(f"{dataset} is a file, not a dataset; give a dataset name ({', '.join(DATASETS)}) or an "
                          "image folder")
    if os.sep in dataset or dataset.startswith((".", "~")):
        raise ViclabError(f"image folder {dataset} does not exist; check the path")
    raise unknown_dataset(dataset)


def dataset_modality(dataset: str) -> str:
    """What a dataset holds, as a key of :data:`MODALITIES`: a registered name's from its registry; a folder's
    from its files' extensions (:func:`folder_modality`). Decided where data are named or loaded; later code
    reads :attr:`ImageData.modality`."""
    if dataset in SOUND_DATASETS:
        return "spectrogram"
    if dataset in DATASETS:
        return "image"
    return folder_modality(Path(dataset).expanduser())


def folder_modality(path: Path) -> str:
    """``spectrogram`` for a folder of sound files (and no images), else ``image`` (also for a missing folder,
    which the image loaders then name in their error)."""
    sound = path.is_dir() and bool(sound_files(path)) and not any(
        f.suffix.lower() in EXTENSIONS for f in path.rglob("*") if f.is_file())
    return "spectrogram" if sound else "image"


def load_inputs(dataset: str, split: str, data_dir: str | os.PathLike | None, cfg: Config,
                device: torch.device | str = "cpu", ctx: Context = QUIET) -> ImageData:
    """A split as a network's inputs: images at ``cfg.augment.size`` (:func:`load_images`), or for sound the
    log-mel spectrograms of its clips (``cfg.sound``; computed in batches on ``device``).

    Args:
        dataset: a registered image or sound dataset, or an image or sound folder.
        split: ``"train"`` or ``"test"``.
        data_dir: data root (``None``: ``$VICLAB_DATA`` or the cache dir).
        cfg: the run's config.
        ctx: ``progress``: a bar while sound files decode.
    """
    if dataset_modality(dataset) == "image":
        return load_images(dataset, split, data_dir, cfg.augment.size)
    if split not in SPLITS:
        raise ViclabError(f"unknown split {split!r}; use 'train' or 'test'")
    name, root = (dataset, resolve_data_dir(data_dir)) if dataset in SOUND_DATASETS else ("sounds", Path(dataset))
    return spectrograms(load_sound(name, split, root, cfg.sound, ctx=ctx), cfg.sound, device)


__all__ = ["DATASETS", "MODALITIES", "SOUND_DATASETS", "ImageData", "SoundData", "dataset_modality", "folder_modality",
           "load_dataset", "load_images", "load_inputs", "load_sound", "resolve_data_dir", "spectrograms"]
