"""Normal and test images (or sound clips' log-mel spectrograms) of an anomaly detector (spec §4, §5).

A registered dataset: its ``normal_classes``' training split is normal, its whole test split the test
set (those classes normal, the others anomalous). anomalib's ``Folder`` convention: ``normal``,
``abnormal`` and an optional ``normal_test`` folder, else a seeded ``test_share`` of the normal images.
Either way a seeded ``holdout`` share of the normal training images calibrates the threshold, and an
``anomalies`` dataset (or folder) may add anomalous test items. Sound and images never mix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from viclab.config import DetectDataConfig, SoundConfig
from viclab.core.errors import ViclabError
from viclab.data import (
    SOUND_DATASETS,
    ImageData,
    dataset_modality,
    folder_modality,
    load_images,
    load_sound,
    resolve_data_dir,
    spectrograms,
)
from viclab.data.folder import EXTENSIONS, load_image_folder
from viclab.data.sounds import EXTENSIONS as SOUND_EXTENSIONS
from viclab.data.sounds import sound_files

NORMAL, ANOMALOUS = 0, 1
TEST_CLASSES = ("normal", "anomalous")


@dataclass(frozen=True)
class TestSet:
    """Labelled test images.

    Attributes:
        data: images ``(M, 3, S, S)`` uint8, labels ``(M,)`` 0 normal / 1 anomalous.
        origin: ``(M,)`` where each image came from, e.g. ``cifar10:cat`` or ``abnormal:crack``.
        files: ``(M,)`` each row's file (:meth:`ImageData.ids`): its absolute path, with ``#w<k>`` for the k-th
            window of a windowed sound file, or ``<dataset>:<split>:<index>`` for a registered image dataset.
        groups: ``(M,)`` each row's machine ID (``id_00``; ``fan/id_00`` when the set holds several machine
            types) where every row carries one (MIMII, DCASE), else ``None``.
    """

    data: ImageData
    origin: np.ndarray
    files: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels.numpy()

    @property
    def groups(self) -> np.ndarray | None:
        return self.data.machine_ids()


def _sound(sound: SoundConfig | None) -> SoundConfig:
    if sound is None:
        raise ValueError("sound data needs the detector's sound settings (pass sound=cfg.recipe.sound)")
    return sound


def _folder(path: str, role: str, size: int, sound: SoundConfig | None = None) -> ImageData:
    """An image folder (flat, or class sub-folders) or a folder of sound files (log-mel spectrograms) for ``role``."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ViclabError(f"the {role} folder {root} does not exist; give a folder of images or sound files")
    if folder_modality(root) == "spectrogram":
        return spectrograms(load_sound("sounds", "test", root, _sound(sound)), _sound(sound))
    if sound_files(root):
        raise ViclabError(f"the {role} folder {root} holds both images and sound files; keep one kind per folder")
    try:
        return load_image_folder(root, size).to_rgb(size)
    except ViclabError as e:
        if str(e).startswith("no images"):
            raise ViclabError(f"the {role} folder {root} holds no images ({', '.join(sorted(EXTENSIONS))}) and no "
                              f"sound files ({', '.join(sorted(SOUND_EXTENSIONS))}); put its files there or give "
                              "another folder") from None
        raise ViclabError(f"the {role} folder: {e}") from None


def _dataset(name: str, split: str, cfg: DetectDataConfig, sound: SoundConfig | None) -> TestSet:
    """A registered dataset's split (or, for ``anomalies``, an image or sound folder) from ``cfg.data_dir`` with
    each row's origin (``dataset:class`` for images, ``dataset:file`` for sound clips), labelled by its classes."""
    if dataset_modality(name) == "image":
        data = load_images(name, split, cfg.data_dir, cfg.size)
        return TestSet(data, np.array([f"{name}:{data.classes[y]}" for y in data.labels.numpy()]))
    layout, root = (name, resolve_data_dir(cfg.data_dir)) if name in SOUND_DATASETS else ("sounds", Path(name))
    clips = load_sound(layout, split, root, _sound(sound))
    return TestSet(spectrograms(clips, _sound(sound)), np.array([f"{name}:{f}" for f in clips.origin]))


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(kept, held out)`` sorted index sets of ``range(n)``; ``round(share * n)`` held out."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = n - int(round(share * n))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def _split_files(data: ImageData, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(kept, held out)`` sorted row indices of ``data``: :func:`_split` of the rows, or of the files
    when rows are windows (windows of a fitted recording among held-out or test rows would look normal)."""
    if data.sources() is None:
        return _split(len(data), share, seed)
    sources, row_source = np.unique(data.sources(), return_inverse=True)
    kept, held = _split(len(sources), share, seed)
    return np.flatnonzero(np.isin(row_source, kept)), np.flatnonzero(np.isin(row_source, held))


def _relabel(data: ImageData, label: int) -> ImageData:
    """``data`` with every row labelled ``label`` as a test class (:data:`TEST_CLASSES`)."""
    return replace(data, labels=torch.full((len(data),), label, dtype=torch.int64), classes=TEST_CLASSES)


def class_indices(names: tuple[str, ...], classes: tuple[str, ...], what: str, dataset: str) -> list[int]:
    """Class ``names`` (names or indices) as sorted indices of ``classes``; all when ``names`` is empty."""
    if not names:
        return list(range(len(classes)))
    out = set()
    for c in names:
        c = c.strip()
        if c in classes:
            out.add(classes.index(c))
        elif c.isdigit() and int(c) < len(classes):
            out.add(int(c))
        else:
            raise ViclabError(f"{what} class {c!r} is not a class of {dataset}; use a name or index of: "
                              + ", ".join(f"{i} {name}" for i, name in enumerate(classes)))
    return sorted(out)


def _test_classes(cfg: DetectDataConfig, classes: tuple[str, ...]) -> tuple[set[int], set[int]]:
    """``(normal, anomalous)`` class indices of a registered dataset: ``cfg.anomaly_classes``, else every
    class that is not normal. A class named both ways is refused, never quietly dropped from either side."""
    normal = set(class_indices(cfg.normal_classes, classes, "normal", cfg.dataset))
    if not cfg.anomaly_classes:
        return normal, set(range(len(classes))) - normal
    odd = set(class_indices(cfg.anomaly_classes, classes, "anomaly", cfg.dataset))
    if both := sorted(normal & odd):
        raise ViclabError(f"class {', '.join(repr(classes[i]) for i in both)} of {cfg.dataset} is both a normal and an "
                          "anomaly class; drop it from --normal-classes or from --anomaly-classes")
    return normal, odd


def normal_pool(cfg: DetectDataConfig, sound: SoundConfig | None = None) -> tuple[ImageData, ImageData | None]:
    """``(normal training pool, normal test images or None)`` before the holdout split."""
    if cfg.normal is None:
        data = _dataset(cfg.dataset, "train", cfg, sound).data
        normal, _ = _test_classes(cfg, data.classes)  # a bad class choice fails before a detector is fitted
        keep = np.flatnonzero(np.isin(data.labels.numpy(), sorted(normal)))
        return data.rows(keep), None
    normal = _folder(cfg.normal, "normal", cfg.size, sound)
    if cfg.normal_test is not None:
        test = _folder(cfg.normal_test, "normal-test", cfg.size, sound)
        _same_kind(normal, test, "normal-test")
        return normal, test
    pool, test = _split_files(normal, cfg.test_share, cfg.seed)
    if len(test) == 0 or len(pool) == 0:  # the windows of one sound file count once
        files = f"{len(normal)} image(s)" if normal.windows is None else f"{len(np.unique(normal.files))} sound file(s)"
        raise ViclabError(f"the normal folder {cfg.normal} holds {files}, too few to hold "
                          f"{cfg.test_share:.0%} out as normal test data; add images or give --normal-test")
    return normal.rows(pool), normal.rows(test)


def _same_kind(normal: ImageData, other: ImageData, role: str) -> None:
    """Refuse to test images against sound (or spectrograms of other settings)."""
    a, b = normal.images, other.images
    if normal.modality != other.modality:
        kinds = tuple("sound clips" if d.modality == "spectrogram" else "images" for d in (normal, other))
        raise ViclabError(f"the normal data are {kinds[0]} but the {role} data are {kinds[1]}; give {kinds[0]}")
    if a.shape[1:] != b.shape[1:]:
        raise ViclabError(f"the {role} spectrograms are {tuple(b.shape[1:])}, the normal ones {tuple(a.shape[1:])}; "
                          "their clips must have the same length (sound.clip_seconds)")


def load_normal(cfg: DetectDataConfig, sound: SoundConfig | None = None) -> tuple[ImageData, ImageData]:
    """``(fit, holdout)``: the normal images a detector fits on, and the seeded ``holdout`` share of them
    kept out of fitting (threshold calibration; empty when ``holdout = 0``), whole sound files to one side.

    Args:
        cfg: the detector's data config.
        sound: decoding and log-mel settings, for sound data (the detector's ``recipe.sound``).
    """
    pool, _ = normal_pool(cfg, sound)
    fit_idx, held = _split_files(pool, cfg.holdout, cfg.seed + 1)  # whole files, as the normal test share
    if len(fit_idx) < 2:
        raise ViclabError(f"{len(fit_idx)} normal image(s) remain to fit on; a detector needs at least 2")
    return pool.rows(fit_idx), pool.rows(held)


def load_test(cfg: DetectDataConfig, abnormal: str | None = None, anomalies: str | None = None,
              sound: SoundConfig | None = None) -> TestSet:
    """The labelled test set: normal test images (label 0), anomalous ones (label 1).

    Args:
        cfg: the detector's data config.
        abnormal: a folder of anomalous images to use instead of ``cfg.abnormal``.
        anomalies: a dataset or folder whose test images are all anomalous, instead of ``cfg.anomalies``.
        sound: decoding and log-mel settings, for sound data (the detector's ``recipe.sound``).
    """
    abnormal, anomalies = abnormal or cfg.abnormal, anomalies or cfg.anomalies
    if cfg.normal is None:
        whole = _dataset(cfg.dataset, "test", cfg, sound)
        normal, odd = _test_classes(cfg, whole.data.classes)
        keep = np.flatnonzero(np.isin(whole.labels, sorted(normal | odd)))
        test_labels = torch.from_numpy(np.where(np.isin(whole.labels[keep], sorted(normal)), NORMAL, ANOMALOUS))
        rows = replace(whole.data.rows(keep), labels=test_labels, classes=TEST_CLASSES)
        parts = [TestSet(rows, whole.origin[keep])]
    else:
        _, normal_test = normal_pool(cfg, sound)
        parts = [TestSet(_relabel(normal_test, NORMAL), np.full(len(normal_test), "normal"))]
    if abnormal is not None:
        bad = _folder(abnormal, "abnormal", cfg.size, sound)
        _same_kind(parts[0].data, bad, "abnormal")
        origin = np.array([f"abnormal:{bad.classes[y]}" for y in bad.labels.numpy()])
        parts.append(TestSet(_relabel(bad, ANOMALOUS), origin))
    if anomalies is not None:
        if anomalies == cfg.dataset and cfg.normal is None:
            raise ViclabError(f"--anomalies {anomalies} is the normal dataset itself; its other classes are already "
                              "the anomalies, or give another dataset")
        extra = _dataset(anomalies, "test", cfg, sound)
        _same_kind(parts[0].data, extra.data, "anomalies")
        parts.append(TestSet(_relabel(extra.data, ANOMALOUS), extra.origin))
    return _test_set(parts)


def _test_set(parts: list[TestSet]) -> TestSet:
    """The parts (each from one source) as one test set, refused unless it holds both normal and anomalous rows."""
    data = ImageData.cat([p.data for p in parts], TEST_CLASSES)
    labels = data.labels.numpy()
    if not (labels == ANOMALOUS).any():
        raise ViclabError("the test set holds no anomalous images; give --abnormal DIR, --anomalies DATASET, or "
                          "normal classes that leave other classes out")
    if not (labels == NORMAL).any():
        raise ViclabError("the test set holds no normal images; give --normal-test DIR or fewer normal classes")
    ids = [p.data.ids() for p in parts]
    files = np.concatenate(ids) if all(i is not None for i in ids) else None
    return TestSet(data, np.array([o for p in parts for o in p.origin]), files)
