"""Normal and test images of an anomaly detector (spec §4; §5's folder convention).

Two sources, one result. A registered dataset: its ``normal_classes`` are normal; the normal
training images are those classes' training split, the test set is the whole test split (those
classes normal, the others anomalous). anomalib's ``Folder`` convention: a ``normal`` folder, an
``abnormal`` folder and an optional ``normal_test`` folder; without it a seeded ``test_share`` of
the normal images is held out as normal test data. Either way a seeded ``holdout`` share of the
normal training images is kept out of fitting to calibrate the threshold, and the test images of
an ``anomalies`` dataset (or folder) may be added, all anomalous.

Sound works the same way: a registered sound dataset (``fsdd``, ``mimii``, ``dcase``; its
``normal`` class for MIMII and DCASE) or folders of sound files, decoded and turned into log-mel
spectrograms with the detector's ``sound`` settings (its recipe's). Sound and images never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from viclab.config import DetectDataConfig, SoundConfig
from viclab.data import SOUND_DATASETS, ImageData, is_sound, load_images, load_sound, resolve_data_dir, spectrograms
from viclab.data.audio import EXTENSIONS as SOUND_EXTENSIONS
from viclab.data.folder import EXTENSIONS, load_image_folder
from viclab.data.sound import sound_files
from viclab.errors import ViclabError

NORMAL, ANOMALOUS = 0, 1
TEST_CLASSES = ("normal", "anomalous")


@dataclass(frozen=True)
class TestSet:
    """Labelled test images.

    Attributes:
        data: images ``(M, 3, S, S)`` uint8, labels ``(M,)`` 0 normal / 1 anomalous.
        origin: ``(M,)`` where each image came from, e.g. ``cifar10:cat`` or ``abnormal:crack``.
    """

    data: ImageData
    origin: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels.numpy()


def _sound(sound: SoundConfig | None) -> SoundConfig:
    if sound is None:
        raise ValueError("sound data needs the detector's sound settings (pass sound=cfg.recipe.sound)")
    return sound


def _folder(path: str, role: str, size: int, sound: SoundConfig | None = None) -> ImageData:
    """A plain image folder (flat, or class sub-folders), or a folder of sound files (their log-mel
    spectrograms), with the role named in any error."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ViclabError(f"the {role} folder {root} does not exist; give a folder of images or sound files")
    if is_sound(str(root)):
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


def _dataset(name: str, split: str, data_dir: str | None, size: int,
             sound: SoundConfig | None) -> tuple[ImageData, list[str]]:
    """A registered dataset's split (or, for ``anomalies``, an image or sound folder) and each row's
    origin: ``dataset:class`` for images, ``dataset:file`` for sound clips."""
    if not is_sound(name):
        data = load_images(name, split, data_dir, size)
        return data, [f"{name}:{data.classes[y]}" for y in data.labels.numpy()]
    layout, root = (name, resolve_data_dir(data_dir)) if name in SOUND_DATASETS else ("sounds", Path(name))
    clips = load_sound(layout, split, root, _sound(sound))
    return spectrograms(clips, _sound(sound)), [f"{name}:{f}" for f in clips.origin]


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(kept, held out)`` sorted index sets of ``range(n)``; ``round(share * n)`` held out."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = n - int(round(share * n))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def _take(data: ImageData, idx: np.ndarray, label: int | None = None) -> ImageData:
    t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    labels = data.labels[t] if label is None else torch.full((len(t),), label, dtype=torch.int64)
    return ImageData(data.images[t], labels, data.classes if label is None else TEST_CLASSES)


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


def normal_class_indices(cfg: DetectDataConfig, classes: tuple[str, ...]) -> list[int]:
    """``cfg.normal_classes`` as sorted indices of ``classes``; all when empty."""
    return class_indices(cfg.normal_classes, classes, "normal", cfg.dataset)


def _normal_pool(cfg: DetectDataConfig, sound: SoundConfig | None = None) -> tuple[ImageData, ImageData | None]:
    """``(normal training pool, normal test images or None)`` before the holdout split."""
    if cfg.normal is None:
        data, _ = _dataset(cfg.dataset, "train", cfg.data_dir, cfg.size, sound)
        keep = np.flatnonzero(np.isin(data.labels.numpy(), normal_class_indices(cfg, data.classes)))
        return _take(data, keep), None
    normal = _folder(cfg.normal, "normal", cfg.size, sound)
    if cfg.normal_test is not None:
        test = _folder(cfg.normal_test, "normal-test", cfg.size, sound)
        _same_kind(normal, test, "normal-test")
        return normal, test
    pool, test = _split(len(normal), cfg.test_share, cfg.seed)
    if len(test) == 0 or len(pool) == 0:
        raise ViclabError(f"the normal folder {cfg.normal} holds {len(normal)} image(s), too few to hold "
                          f"{cfg.test_share:.0%} out as normal test data; add images or give --normal-test")
    return _take(normal, pool), _take(normal, test)


def _same_kind(normal: ImageData, other: ImageData, role: str) -> None:
    """Refuse to test images against sound (or spectrograms of other settings)."""
    a, b = normal.images, other.images
    if a.is_floating_point() != b.is_floating_point():
        kinds = ("sound clips" if a.is_floating_point() else "images", "sound clips" if b.is_floating_point()
                 else "images")
        raise ViclabError(f"the normal data are {kinds[0]} but the {role} data are {kinds[1]}; give {kinds[0]}")
    if a.shape[1:] != b.shape[1:]:
        raise ViclabError(f"the {role} spectrograms are {tuple(b.shape[1:])}, the normal ones {tuple(a.shape[1:])}; "
                          "their clips must have the same length (sound.clip_seconds)")


def load_normal_test(cfg: DetectDataConfig, sound: SoundConfig | None = None) -> ImageData:
    """The normal test images of folder data (the ``normal_test`` folder, or the held-out share)."""
    if cfg.normal is None:
        raise ValueError("only folder data has its own normal test images")
    return _normal_pool(cfg, sound)[1]


def load_normal(cfg: DetectDataConfig, sound: SoundConfig | None = None) -> tuple[ImageData, ImageData]:
    """``(fit, holdout)``: the normal images a detector fits on, and the seeded ``holdout`` share
    of them kept out of fitting (threshold calibration; empty when ``holdout = 0``).

    Args:
        cfg: the detector's data config.
        sound: decoding and log-mel settings, for sound data (the detector's ``recipe.sound``).
    """
    pool, _ = _normal_pool(cfg, sound)
    fit_idx, held = _split(len(pool), cfg.holdout, cfg.seed + 1)
    if len(fit_idx) < 2:
        raise ViclabError(f"{len(fit_idx)} normal image(s) remain to fit on; a detector needs at least 2")
    return _take(pool, fit_idx), _take(pool, held)


def load_test(cfg: DetectDataConfig, abnormal: str | None = None, anomalies: str | None = None,
              sound: SoundConfig | None = None) -> TestSet:
    """The labelled test set: normal test images (label 0), anomalous ones (label 1).

    Args:
        cfg: the detector's data config.
        abnormal: a folder of anomalous images to use instead of ``cfg.abnormal``.
        anomalies: a dataset or folder whose test images are all anomalous, instead of ``cfg.anomalies``.
        sound: decoding and log-mel settings, for sound data (the detector's ``recipe.sound``).
    """
    abnormal = abnormal or cfg.abnormal
    anomalies = anomalies or cfg.anomalies
    parts: list[tuple[ImageData, list[str]]] = []
    if cfg.normal is None:
        data, origin = _dataset(cfg.dataset, "test", cfg.data_dir, cfg.size, sound)
        normal = set(normal_class_indices(cfg, data.classes))
        odd = set(class_indices(cfg.anomaly_classes, data.classes, "anomaly", cfg.dataset)) - normal \
            if cfg.anomaly_classes else set(range(len(data.classes))) - normal
        if cfg.anomaly_classes and not odd:
            raise ViclabError("the anomaly classes are all normal classes; give classes that are not normal")
        labels = data.labels.numpy()
        keep = np.flatnonzero(np.isin(labels, sorted(normal | odd)))
        parts.append((ImageData(data.images[torch.from_numpy(keep)],
                                torch.tensor([NORMAL if labels[i] in normal else ANOMALOUS for i in keep]),
                                TEST_CLASSES), [origin[i] for i in keep]))
    else:
        _, normal_test = _normal_pool(cfg, sound)
        parts.append((_take(normal_test, np.arange(len(normal_test)), NORMAL), ["normal"] * len(normal_test)))
    if abnormal is not None:
        bad = _folder(abnormal, "abnormal", cfg.size, sound)
        _same_kind(parts[0][0], bad, "abnormal")
        names = [f"abnormal:{bad.classes[y]}" for y in bad.labels.numpy()]
        parts.append((_take(bad, np.arange(len(bad)), ANOMALOUS), names))
    if anomalies is not None:
        if anomalies == cfg.dataset and cfg.normal is None:
            raise ViclabError(f"--anomalies {anomalies} is the normal dataset itself; its other classes are already "
                              "the anomalies, or give another dataset")
        extra, origin = _dataset(anomalies, "test", cfg.data_dir, cfg.size, sound)
        _same_kind(parts[0][0], extra, "anomalies")
        parts.append((_take(extra, np.arange(len(extra)), ANOMALOUS), origin))
    data = ImageData(torch.cat([p.images for p, _ in parts]), torch.cat([p.labels for p, _ in parts]), TEST_CLASSES)
    labels = data.labels.numpy()
    if not (labels == ANOMALOUS).any():
        raise ViclabError("the test set holds no anomalous images; give --abnormal DIR, --anomalies DATASET, or "
                          "normal classes that leave other classes out")
    if not (labels == NORMAL).any():
        raise ViclabError("the test set holds no normal images; give --normal-test DIR or fewer normal classes")
    return TestSet(data, np.array([o for _, names in parts for o in names]))
